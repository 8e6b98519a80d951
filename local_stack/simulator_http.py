"""What every exchange simulator shares: its HTTP server and the shape of an answer.

A simulator is any object with ``handle(method, path, query, body) -> Reply``; ``SimulatorServer``
serves it over real HTTP/1.1 with keep-alive, as the exchanges' APIs are served. Stdlib only: the
offline demo stack runs the simulators too.
"""

from __future__ import annotations

import json
import socketserver
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, obj: Any, **headers: str) -> Reply:
    return Reply(status, json.dumps(obj, separators=(",", ":")).encode(), headers=headers)


class Simulator(Protocol):
    def handle(self, method: str, path: str, query: str = "", body: bytes = b"") -> Reply: ...


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True  # a handler still sleeping in a timeout fault must not block shutdown

    def __init__(self, address: tuple[str, int], sim: Simulator) -> None:
        self.sim = sim
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # skips HTTPServer's getfqdn(), a DNS lookup
        host, self.server_port = self.server_address[:2]
        self.server_name = str(host)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as pooled clients use the real APIs
    timeout = 60  # an idle kept-alive connection frees its thread after this
    disable_nagle_algorithm = True  # headers and body go out in two writes; no 40 ms delayed-ACK stall
    server: SimulatorServer

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_DELETE = do_GET

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 1_000_000)) if length > 0 else b""
        reply = self.server.sim.handle(self.command, url.path, url.query, body)
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:  # the client gave up, e.g. during a timeout fault
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the sims' request logs
        pass
