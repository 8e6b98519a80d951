"""What every exchange simulator shares: its HTTP server and the shape of an answer.

A simulator is any object with ``handle(method, path, query, body) -> Reply``; ``SimulatorServer``
serves it over real HTTP/1.1 with keep-alive, as the exchanges' APIs are served; ``SimulatorBase``
holds what every simulator has besides its protocol, and ``command_line_process`` runs a simulator's
command line in a child process. Stdlib only: the offline demo stack runs the simulators too.
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socketserver
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar
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


def stop_serving(server: socketserver.BaseServer | None, thread: threading.Thread | None) -> None:
    """Stop a server's ``serve_forever`` loop, close its socket and join the thread serving it (each
    that is there)."""
    if server is not None:
        server.shutdown()
        server.server_close()
    if thread is not None:
        thread.join(timeout=5)


@contextmanager
def command_line_process(
    module: str, *args: str, timeout_s: float = 10.0
) -> Iterator[tuple[str, Callable[[], int]]]:
    """A simulator's command line, ``python -m <module> --port 0 *args``, run in a child process as a shell
    runs it. Yields the base URL it prints (``serve_until_interrupted``'s first line) and ``interrupt``,
    which sends the child Ctrl-C's SIGINT and returns its exit code. Killed and reaped however it ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", "0", *args],
        cwd=Path(__file__).resolve().parents[1],  # where `-m local_stack.…` is found
        stdout=subprocess.PIPE,
        text=True,
    )

    def interrupt() -> int:
        process.send_signal(signal.SIGINT)
        return process.wait(timeout=timeout_s)

    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], timeout_s)
        if not ready:
            raise RuntimeError(f"{module} printed no base URL within {timeout_s} s")
        yield process.stdout.readline().strip(), interrupt
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@dataclass(frozen=True)
class LoggedRequest:
    """When and what a simulator was asked; each simulator's request record adds what it answered."""

    monotonic: float
    wall_time: float
    method: str
    path: str


RecordT = TypeVar("RecordT", bound=LoggedRequest)
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
        stop_serving(self._server, self._thread)
        self._server = self._thread = None

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

    @staticmethod
    def command_line_parser(description: str, *, port: int) -> argparse.ArgumentParser:
        """The simulator's command line: --host, --port (``port`` by default), --seed and --latency-ms
        (a latency fault on every request); the simulator adds its own options."""
        parser = argparse.ArgumentParser(description=description)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=port)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--latency-ms", type=float, default=0.0)
        return parser

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

    def _take_response_fault(self, path: str) -> Fault | None:
        """The first response fault that applies to ``path``, counted down once (call under the lock)."""
        faults = self._take_faults(path, self.response_faults, first_only=True)
        return faults[0] if faults else None

    # --- faults: each simulator names its response faults and checks its own options -------------------
    response_faults: frozenset[str] = frozenset()  # the faults that change an answer, beside DELAY_FAULTS

    def _fault_options(self, kind: str, status: int | None) -> tuple[int, float]:
        """A fault's answer status and Retry-After from ``set_fault``'s own options, checked; a
        simulator with other options or defaults overrides this (an option it lacks is a TypeError).
        Here: ``status`` a 5xx, 503 by default."""
        status = 503 if status is None else status
        if not 500 <= status <= 599:
            raise ValueError("status must be a 5xx")
        return status, 1.0

    def set_fault(
        self,
        kind: str,
        *,
        path: str | None = None,
        count: int | None = None,
        status: int | None = None,
        seconds: float = 30.0,
        latency_ms: float = 0.0,
        **options: Any,
    ) -> None:
        """Queue a fault for API requests on `path` (all when None), for the next `count` (until cleared).

        ``status`` and any further ``options``: as the simulator's ``_fault_options`` takes them.
        Response faults answer in the order they were set; latency and timeout delays add up.
        """
        status, retry_after = self._fault_options(kind, status, **options)
        known = self.response_faults | DELAY_FAULTS
        if kind not in known:
            raise ValueError(f"unknown fault {kind!r}; known: {sorted(known)}")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1")
        delay = fault_delay_s(kind, latency_ms=latency_ms, seconds=seconds)
        with self._lock:
            self._faults.append(
                Fault(kind, path, count, status, retry_after=float(retry_after), seconds=delay)
            )

    # --- answers faults share: the exchange's own 5xx, or the HTML page of the CDN in front of it -------
    cdn_page = "<html><head><title>{0}</title></head><body><h1>{0}</h1></body></html>"  # {0}: the title
    server_errors: ClassVar[Mapping[int, Any]] = {}  # the 5xx the exchange answers itself: its JSON bodies

    def _cdn_page_reply(self, status: int, title: str) -> Reply:
        return Reply(status, self.cdn_page.format(title).encode(), "text/html")

    def _server_error_reply(self, status: int) -> Reply:
        """A server_error fault's answer: the exchange's own JSON body where it answers ``status``
        itself, else its CDN's page."""
        if status in self.server_errors:
            return json_reply(status, self.server_errors[status])
        return self._cdn_page_reply(status, f"{status} ERROR")

    def _invalid_json_reply(self) -> Reply:
        """An invalid_json fault's answer: a 200 whose body is the CDN's page, not the JSON expected."""
        return self._cdn_page_reply(200, "502 Bad Gateway")

    def traded_pairs(self) -> list[str]:
        """The pairs it trades now, as the service names them (``BASE/QUOTE``): what a pair submitted
        to a stack on this simulator can be verified against. Listed markets that do not trade (halted,
        disabled) are left out, as the fetcher leaves them out."""
        return []

    # --- what a subclass provides for the control routes ---------------------------------------------
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
                    return json_reply(200, [asdict(record) for record in self.requests])
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
