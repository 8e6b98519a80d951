"""One connection of the local WebSocket API: wsproto on the socket of an upgraded HTTP request.

The connection's own thread reads (``run``); any thread may send (``send_message``, ``close``): the
management API's posts arrive on the HTTP server's threads, many at once when the broadcaster fans
out. One lock per connection orders its frames and guards wsproto's state, which is not thread-safe;
a send waits for that lock and that socket only, so a slow client delays posts to itself and no
other, and a client that takes more than ``SEND_TIMEOUT_S`` to take a frame is treated as gone.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from wsproto import ConnectionState, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Event, Ping, TextMessage
from wsproto.utilities import LocalProtocolError

MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway's limits
IDLE_TIMEOUT_S = 10 * 60.0
MAX_AGE_S = 2 * 3600.0
SEND_TIMEOUT_S = 1.0  # a client whose buffers stay full this long is stuck: treated as gone
CLOSE_GRACE_S = 1.0  # how long a close frame we sent waits for the client's before the socket goes
READ_BYTES = 65536


class Gone(Exception):
    """The connection is closed or closing: the management API answers 410."""


@dataclass(frozen=True)
class Peer:
    """What API Gateway knows of a connection from its upgrade request."""

    connection_id: str
    source_ip: str
    user_agent: str
    domain: str  # the Host the client asked for
    connected_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = MAX_MESSAGE_BYTES
    idle_timeout_s: float = IDLE_TIMEOUT_S
    max_age_s: float = MAX_AGE_S


@dataclass(frozen=True)
class Closed:
    """How a connection ended with a close frame (either side's): what ``$disconnect`` is told."""

    code: int
    reason: str


class Connection:
    def __init__(self, peer: Peer, sock: socket.socket, ws: WSConnection, limits: Limits) -> None:
        self.peer = peer
        self._sock, self._ws = sock, ws
        self._max_message_bytes = limits.max_message_bytes
        self._idle_timeout_s, self._max_age_s = limits.idle_timeout_s, limits.max_age_s
        self._started = self._last_active = time.monotonic()
        self.last_active_at = peer.connected_at  # wall clock, for GET @connections
        self._lock = threading.Lock()
        self._ours: Closed | None = None  # a close we started: its code, for $disconnect
        self._close_deadline: float | None = None
        self.finished = threading.Event()  # set once its $disconnect, if any, has returned
        sock.settimeout(SEND_TIMEOUT_S)  # reads wait in poll(), never on the socket: this bounds sends

    def _touch(self) -> None:
        self._last_active, self.last_active_at = time.monotonic(), time.time()

    def _write(self, event: Event) -> None:
        """Under the lock: wsproto's bytes for ``event`` onto the socket; a failed send breaks it."""
        try:
            self._sock.sendall(self._ws.send(event))
        except OSError:
            self._break()
            raise

    def _break(self) -> None:
        """The socket is unusable (reset, or a client too slow to read): the reader sees it end."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def drop(self) -> None:
        """Cut the connection without a close frame, as a network failure does."""
        self._break()

    def accept(self, register: Callable[[], None]) -> None:
        """Answer the upgrade. ``register`` makes the id known to the management API inside the
        lock, so a post that comes at once waits for the 101 instead of finding no connection."""
        with self._lock:
            register()
            self._sock.sendall(self._ws.send(AcceptConnection()))
            self._touch()

    def send_message(self, data: bytes) -> None:
        """A management API post: a text frame (a binary one when ``data`` is not UTF-8)."""
        try:
            event: Event = TextMessage(data.decode("utf-8"))
        except UnicodeDecodeError:
            event = BytesMessage(data)
        with self._lock:
            if self._ws.state is not ConnectionState.OPEN:
                raise Gone
            try:
                self._write(event)
            except OSError:
                raise Gone from None
            self._touch()

    def close(self, code: int, reason: str) -> bool:
        """Start the close handshake from this side; False when it is closing already."""
        with self._lock:
            if self._ws.state is not ConnectionState.OPEN:
                return False
            self._ours = Closed(code, reason)
            self._close_deadline = time.monotonic() + CLOSE_GRACE_S
            with contextlib.suppress(OSError):
                self._write(CloseConnection(code, reason))
        return True

    def _deadline(self) -> float:
        if self._close_deadline is not None:
            return self._close_deadline
        return min(self._last_active + self._idle_timeout_s, self._started + self._max_age_s)

    def run(self, on_message: Callable[[str | bytes], None]) -> Closed | None:
        """Read frames until the connection ends; ``on_message`` gets each whole message. Returns
        how it closed, or None when the client vanished without a close frame (reset, EOF)."""
        try:
            return self._read(on_message)
        finally:
            self._break()

    def _read(self, on_message: Callable[[str | bytes], None]) -> Closed | None:
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        parts: list[str | bytes] = []
        size = 0
        while True:
            wait = self._deadline() - time.monotonic()
            if wait <= 0:
                if self._close_deadline is not None:  # the client never answered our close frame
                    return self._ours
                self.close(1001, "Going away")  # API Gateway's idle and 2-hour limits both say this
                continue
            if not poller.poll(wait * 1000):
                continue
            try:
                data = self._sock.recv(READ_BYTES)
            except OSError:
                data = b""
            if not data:  # EOF or reset: after our close frame still a close; else vanished
                return self._ours
            with self._lock:
                try:
                    self._ws.receive_data(data)
                except LocalProtocolError:  # bytes after the close handshake: nothing to read
                    return self._ours
                events = list(self._ws.events())
            self._touch()
            for event in events:
                if isinstance(event, TextMessage | BytesMessage):
                    if self._ws.state is not ConnectionState.OPEN:
                        continue  # closing: the rest of the message is dropped
                    part = event.data if isinstance(event.data, str) else bytes(event.data)
                    size += len(part.encode() if isinstance(part, str) else part)
                    parts.append(part)
                    if size > self._max_message_bytes:
                        parts, size = [], 0
                        self.close(1009, "Message too big")
                    elif event.message_finished:
                        on_message(_joined(parts))
                        parts, size = [], 0
                elif isinstance(event, Ping):
                    with self._lock, contextlib.suppress(OSError, LocalProtocolError):
                        self._write(event.response())
                elif isinstance(event, CloseConnection):
                    closed = self._closing(event)
                    if closed is not None:
                        return closed

    def _closing(self, event: CloseConnection) -> Closed | None:
        with self._lock:
            state = self._ws.state
            if state is ConnectionState.REMOTE_CLOSING:  # the client's close: answered, then done
                with contextlib.suppress(OSError):
                    self._write(event.response())
                return Closed(int(event.code), event.reason or "")
            if state is ConnectionState.CLOSED:  # the client's answer to our close
                return self._ours
        # Still open: wsproto could not parse a frame (1002, 1007); close with its code.
        self.close(int(event.code), event.reason or "")
        return None


def _joined(parts: list[str | bytes]) -> str | bytes:
    texts = [part for part in parts if isinstance(part, str)]
    return "".join(texts) if texts else b"".join(part for part in parts if isinstance(part, bytes))
