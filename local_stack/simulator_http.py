"""What every exchange simulator shares: its HTTP server and the shape of an answer.

A simulator is any object with ``handle(method, path, query, body) -> Reply``; ``SimulatorServer``
serves it over real HTTP/1.1 with keep-alive, as the exchanges' APIs are served. Stdlib only: the
offline demo stack runs the simulators too.
"""

from __future__ import annotations

import json
import socketserver
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Protocol, TypeVar
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


@dataclass
class Fault:
    """A switched-on fault: ``kind`` on ``path`` (every API path when None), for the next
    ``remaining`` requests (until cleared when None)."""

    kind: str
    path: str | None = None
    remaining: int | None = None
    status: int = 503
    retry_after: float = 1.0  # seconds, where the fault answers with a Retry-After
    seconds: float = 0.0  # latency and timeout faults: how long the answer waits


DELAY_FAULTS = frozenset({"latency", "timeout"})  # faults that hold an answer back, then let it go
MAX_TIMEOUT_S = 120.0


def fault_delay_s(kind: str, *, latency_ms: float, seconds: float) -> float:
    """How long a fault of ``kind`` holds its answer back (0 for the faults that change it)."""
    if kind == "latency":
        return latency_ms / 1000
    if kind == "timeout":
        return min(float(seconds), MAX_TIMEOUT_S)
    return 0.0


RecordT = TypeVar("RecordT")
SimulatorT = TypeVar("SimulatorT", bound="SimulatorBase[Any]")


class SimulatorBase(Generic[RecordT]):
    """Lifecycle, request log, faults and control routes of a simulator; a subclass answers
    ``handle`` for its protocol and names its markets for the control routes.

    ``_lock`` guards the subclass's state too (handler threads and tests share it), and
    ``_stopping`` wakes any latency or timeout fault's sleep when the simulator stops.

    Control routes, for end-to-end tests (not rate limited, not logged): GET|DELETE
    /_simulator/requests; GET|POST|DELETE /_simulator/faults ({"fault": kind, ...set_fault's
    keywords}); GET|POST /_simulator/<markets_route> ({"action": ..., ...the action's keywords});
    POST /_simulator/reset.
    """

    thread_name = "exchange-simulator"
    markets_route = "markets"

    def __init__(self, host: str, port: int, *, log_limit: int) -> None:
        self.host, self.port = host, port
        self._lock = threading.RLock()
        self._log: deque[RecordT] = deque(maxlen=log_limit)
        self._stopping = threading.Event()
        self._server: SimulatorServer | None = None
        self._thread: threading.Thread | None = None
        self._faults: list[Fault] = []

    def handle(self, method: str, path: str, query: str = "", body: bytes = b"") -> Reply:
        raise NotImplementedError

    def start(self) -> str:
        self._stopping.clear()
        self._server = SimulatorServer((self.host, self.port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()
        return self._server.base_url

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self: SimulatorT) -> SimulatorT:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return self._server.base_url

    @property
    def requests(self) -> list[RecordT]:
        with self._lock:
            return list(self._log)

    def reset_requests(self) -> None:
        with self._lock:
            self._log.clear()

    def serve_until_interrupted(self, *, latency_ms: float = 0.0) -> None:
        """The command line's way to run it: print the base URL, serve until Ctrl-C."""
        if latency_ms:
            self.set_fault("latency", latency_ms=latency_ms)
        print(self.start(), flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def _hold_for_delay_faults(self, path: str) -> None:
        """Wait out the latency and timeout faults on ``path`` (outside the lock; stop() cuts it short)."""
        with self._lock:
            delay = sum(f.seconds for f in self._take_faults(path, DELAY_FAULTS, first_only=False))
        if delay:
            self._stopping.wait(delay)

    def _take_faults(self, path: str, kinds: set[str] | frozenset[str], first_only: bool) -> list[Fault]:
        """The faults of ``kinds`` that apply to ``path``, each counted down once (call under the lock)."""
        taken = []
        for fault in list(self._faults):
            if fault.kind in kinds and fault.path in (None, path):
                taken.append(fault)
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                if first_only:
                    break
        return taken

    def _queue_fault(
        self,
        kind: str,
        response_faults: set[str] | frozenset[str],
        *,
        path: str | None,
        count: int | None,
        status: int,
        seconds: float,
        latency_ms: float,
        retry_after: float = 1.0,
    ) -> None:
        """Check and queue one fault; each simulator's ``set_fault`` checks its own options first.

        Response faults answer in the order they were set; latency and timeout delays add up.
        """
        known = set(response_faults) | DELAY_FAULTS
        if kind not in known:
            raise ValueError(f"unknown fault {kind!r}; known: {sorted(known)}")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1")
        delay = fault_delay_s(kind, latency_ms=latency_ms, seconds=seconds)
        with self._lock:
            self._faults.append(
                Fault(kind, path, count, status, retry_after=float(retry_after), seconds=delay)
            )

    # --- what a subclass provides for the control routes ---------------------------------------------
    set_fault: Callable[..., None]  # (kind, **options): each simulator has its own faults and options

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset_limits(self) -> None:
        """Forget what the simulator's rate limits have counted."""

    def _market_actions(self) -> dict[str, Callable[..., object]]:
        return {}

    def _market_listing(self) -> Any:
        return []

    def _control_not_found(self) -> Reply:
        return json_reply(404, {"error": "no such control route"})

    def _control_error(self, message: str) -> Reply:
        return json_reply(400, {"error": message})

    def _faults_view(self) -> dict[str, Any]:
        return {"faults": [asdict(fault) for fault in self._faults]}

    def _add_fault(self, data: dict[str, Any]) -> None:
        self.set_fault(data.pop("fault"), **data)

    # --- the control routes ----------------------------------------------------------------------------
    def _control(self, method: str, path: str, body: bytes) -> Reply:
        markets = f"/_simulator/{self.markets_route}"
        try:
            data = json.loads(body or b"{}") if method == "POST" else {}
            if not isinstance(data, dict):
                raise ValueError("a JSON object is expected")
            match method, path:
                case "GET", "/_simulator/requests":
                    return json_reply(200, [asdict(record) for record in self.requests])  # type: ignore[call-overload]
                case "DELETE", "/_simulator/requests":
                    self.reset_requests()
                case "GET", "/_simulator/faults":
                    with self._lock:
                        return json_reply(200, self._faults_view())
                case "POST", "/_simulator/faults":
                    self._add_fault(data)
                case "DELETE", "/_simulator/faults":
                    self.clear_faults()
                case "POST", "/_simulator/reset":
                    self.clear_faults()
                    self.reset_limits()
                    self.reset_requests()
                case "POST", _ if path == markets:
                    self._market_actions()[data.pop("action")](**data)
                case "GET", _ if path == markets:
                    pass
                case _:
                    return self._control_not_found()
        except (KeyError, TypeError, ValueError) as exc:
            return self._control_error(f"{type(exc).__name__}: {exc}")
        if path == markets:
            with self._lock:
                return json_reply(200, {"ok": True, self.markets_route: self._market_listing()})
        return json_reply(200, {"ok": True})
