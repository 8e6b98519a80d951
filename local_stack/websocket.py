"""A local stand-in for the WebSocket API and its management API, on the local HTTP API's port.

``ws://127.0.0.1:$PORT/ws`` accepts WebSocket connections (wsproto on the upgraded request's socket);
connects, messages and closes become API Gateway WebSocket events (the shape of Powertools' own
fixtures) for the functions the template's routes target, invoked in-process with a Lambda-like
context. ``/@connections/{id}`` is the management API the functions post through with their real
boto3 ``apigatewaymanagementapi`` client (``STREAM_MANAGEMENT_URL``): POST sends a frame, DELETE
closes, GET describes; a connection that is not open answers 410 ``GoneException``.

As on AWS:
- a connection id is 16 URL-safe base64 characters ending in ``=``;
- ``$connect`` answering a statusCode other than 2xx refuses the upgrade with that status (502
  when the function fails);
- a message goes to the route its ``RouteSelectionExpression`` (``$request.body.action``) names,
  else to ``$default``; with neither, the client is told ``Forbidden``; a failing function, ``Internal
  server error``. What a function returns for a message is not sent (on AWS only a route response
  sends it): functions answer through the management API;
- a message over 128 KB closes the connection with 1009; one idle for 10 minutes (no frame either
  way) or open for 2 hours is closed with 1001; each limit is a constructor parameter for tests;
- ``$disconnect`` follows every close frame, either side's (DELETE closes with 1000).

Not as on AWS, on purpose: a client that vanishes without a close frame (a reset, EOF) is forgotten
at once and ``$disconnect`` is NOT invoked. API Gateway's ``$disconnect`` is best effort; leaving it
out here keeps the other path testable: a post to that id answers 410, and the poster removes it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import RejectConnection, RejectData
from wsproto.utilities import RemoteProtocolError

from local_stack.lambda_api import LocalFunction, Reply
from local_stack.services import say
from local_stack.template import WebSocketApi
from local_stack.websocket_connection import (
    IDLE_TIMEOUT_S,
    MAX_AGE_S,
    MAX_MESSAGE_BYTES,
    Closed,
    Connection,
    Gone,
    Limits,
    Peer,
)

JSON = {"Content-Type": "application/json"}
# Local only, for clients' tests: POST {"seconds": n} cuts every connection without a close frame
# and refuses new ones (503) for n seconds, as an outage of the endpoint would; DELETE ends it.
OUTAGE_PATH = "/_local/websocket/outage"
NO_STATUS = "Client-side close frame status not set"  # API Gateway's reason for a close without a code


def aws_id() -> str:
    """An id shaped as API Gateway's connection and request ids: 16 characters, the last "="."""
    return base64.urlsafe_b64encode(secrets.token_bytes(11)).decode()


def _gone(connection_id: str) -> Reply:
    headers = {**JSON, "x-amzn-ErrorType": "GoneException"}
    return 410, headers, json.dumps({"message": f"connection {connection_id} is gone"}).encode()


class LocalWebSocketApi:
    def __init__(
        self, api: WebSocketApi, *, path: str = "/ws", max_message_bytes: int = MAX_MESSAGE_BYTES,
        idle_timeout_s: float = IDLE_TIMEOUT_S, max_age_s: float = MAX_AGE_S,
        functions: Iterable[LocalFunction] = (), report: Callable[[str], None] = say,
    ) -> None:  # fmt: skip
        """``functions``: the ones the routes target, shared with the Lambda API (one import each)."""
        self.api, self.path = api, path
        self._limits = Limits(max_message_bytes, idle_timeout_s, max_age_s)
        shared = {function.name: function for function in functions}
        self.routes = {
            route.route_key: shared.setdefault(route.function.logical_id, LocalFunction(route.function))
            for route in api.routes
        }
        expression, body = api.route_selection_expression, "$request.body."
        self._selector = expression.removeprefix(body).split(".") if expression.startswith(body) else []
        self._report = report
        self._connections: dict[str, Connection] = {}
        self._lock = threading.Lock()
        self._down_until = 0.0  # monotonic: an outage (OUTAGE_PATH) refuses upgrades until then

    # --- the WebSocket endpoint --------------------------------------------------------------------

    def serve(self, request: BaseHTTPRequestHandler) -> None:
        """Upgrade ``request`` (its thread becomes the connection's reader) and serve it to its end."""
        sock = request.connection
        ws = WSConnection(ConnectionType.SERVER)
        headers = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in request.headers.items()
        ]
        try:
            ws.initiate_upgrade_connection(headers, request.path)
        except RemoteProtocolError as exc:  # not an upgrade: wsproto's answer (400, 426)
            sock.sendall(ws.send(exc.event_hint or RejectConnection(status_code=400)))
            return
        list(ws.events())
        if time.monotonic() < self._down_until:
            sock.sendall(ws.send(RejectConnection(status_code=503)))
            return
        peer = Peer(
            aws_id(), request.client_address[0], request.headers.get("User-Agent", ""),
            request.headers.get("Host", ""),
        )  # fmt: skip
        refused = self._connect(peer, request)
        if refused is not None:
            body = refused[1]
            length = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
            sock.sendall(ws.send(RejectConnection(status_code=refused[0], headers=length, has_body=True)))
            sock.sendall(ws.send(RejectData(data=body)))
            return
        connection = Connection(peer, sock, ws, self._limits)
        try:
            connection.accept(lambda: self._register(connection))
            closed = connection.run(lambda message: self._message(connection, message))
        except OSError:
            closed = None
        try:
            self._forget(connection)
            if closed is not None:
                self._disconnect(peer, closed)
        finally:
            connection.finished.set()

    def _register(self, connection: Connection) -> None:
        with self._lock:
            self._connections[connection.peer.connection_id] = connection

    def _forget(self, connection: Connection) -> None:
        with self._lock:
            if self._connections.get(connection.peer.connection_id) is connection:
                del self._connections[connection.peer.connection_id]

    def _context(self, peer: Peer, route_key: str, event_type: str, **extra: Any) -> dict[str, Any]:
        now, request_id = time.time(), aws_id()
        return {
            "routeKey": route_key,
            **extra,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "messageDirection": "IN",
            "stage": self.api.stage,
            "connectedAt": int(peer.connected_at * 1000),
            "requestTimeEpoch": int(now * 1000),
            "identity": {"sourceIp": peer.source_ip},
            "requestId": request_id,
            "domainName": peer.domain,
            "connectionId": peer.connection_id,
            "apiId": "local",
        }

    def _invoke(self, route_key: str, event: dict[str, Any]) -> tuple[bool, Any]:
        """(True, result) or (False, None) when the route's function raised (reported)."""
        function = self.routes[route_key]
        try:
            return True, function.invoke(event)
        except Exception as exc:
            kind = getattr(exc, "error_type", type(exc).__name__)
            self._report(f"{function.name} failed on {route_key}: {kind}: {exc}")
            if not hasattr(exc, "error_type"):
                self._report(traceback.format_exc().rstrip())
            return False, None

    def _connect(self, peer: Peer, request: BaseHTTPRequestHandler) -> tuple[int, bytes] | None:
        """The ``$connect`` route's verdict: None to accept, else the status and body refusing it."""
        if "$connect" not in self.routes:
            return None
        port = str(getattr(request.server, "server_port", ""))
        forwarded = {"X-Forwarded-For": peer.source_ip, "X-Forwarded-Port": port, "X-Forwarded-Proto": "http"}
        headers = {**dict(request.headers.items()), **forwarded}
        multi: dict[str, list[str]] = {}
        for name, value in [*request.headers.items(), *forwarded.items()]:
            multi.setdefault(name, []).append(value)
        event: dict[str, Any] = {"headers": headers, "multiValueHeaders": multi}
        query = parse_qs(urlsplit(request.path).query, keep_blank_values=True)
        if query:
            event["queryStringParameters"] = {name: values[-1] for name, values in query.items()}
            event["multiValueQueryStringParameters"] = query
        event["requestContext"] = self._context(peer, "$connect", "CONNECT")
        event["isBase64Encoded"] = False
        ok, result = self._invoke("$connect", event)
        if not ok:
            return 502, b'{"message": "Internal server error"}'
        status = int(result.get("statusCode", 200)) if isinstance(result, dict) else 200
        if 200 <= status < 300:
            return None
        body = str(result.get("body") or "").encode() or b'{"message": "Forbidden"}'
        return (status if 400 <= status < 600 else 403), body

    def _route_for(self, message: str | bytes) -> str | None:
        if isinstance(message, str) and self._selector:
            try:
                value: Any = json.loads(message)
            except ValueError:
                value = None
            for key in self._selector:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, str) and value in self.routes and not value.startswith("$"):
                return value
        return "$default" if "$default" in self.routes else None

    def _message(self, connection: Connection, message: str | bytes) -> None:
        peer = connection.peer
        route_key = self._route_for(message)
        context = self._context(peer, route_key or "$default", "MESSAGE", messageId=aws_id())
        if route_key is None:
            self._tell(connection, "Forbidden", context["requestId"])
            return
        binary = isinstance(message, bytes)
        body = base64.b64encode(message).decode() if isinstance(message, bytes) else message
        event = {"requestContext": context, "body": body, "isBase64Encoded": binary}
        if not self._invoke(route_key, event)[0]:
            self._tell(connection, "Internal server error", context["requestId"])

    def _tell(self, connection: Connection, message: str, request_id: str) -> None:
        """API Gateway's own error message to the client (the function never sees it)."""
        text = {"message": message, "connectionId": connection.peer.connection_id, "requestId": request_id}
        with contextlib.suppress(Gone):
            connection.send_message(json.dumps(text).encode())

    def _disconnect(self, peer: Peer, closed: Closed) -> None:
        if "$disconnect" not in self.routes:
            return
        headers = {"Host": peer.domain, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
        context = self._context(
            peer, "$disconnect", "DISCONNECT", disconnectStatusCode=closed.code,
            disconnectReason=closed.reason or (NO_STATUS if closed.code == 1005 else ""),
        )  # fmt: skip
        event = {
            "headers": headers,
            "multiValueHeaders": {name: [value] for name, value in headers.items()},
            "requestContext": context,
            "isBase64Encoded": False,
        }
        self._invoke("$disconnect", event)

    # --- the management API ------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str
    ) -> Reply | None:
        """``/@connections/{id}`` (also under a stage, ``/live/@connections/{id}``, as on AWS), and
        the local outage switch."""
        path = urlsplit(target).path
        if path == OUTAGE_PATH:
            return self._outage(method, body)
        before, marker, connection_id = path.partition("/@connections/")
        if not marker or before.count("/") > 1 or not connection_id or "/" in connection_id:
            return None
        connection_id = unquote(connection_id)
        with self._lock:
            connection = self._connections.get(connection_id)
        if connection is None:
            return _gone(connection_id)
        if method == "POST":
            if len(body) > MAX_MESSAGE_BYTES:
                headers = {**JSON, "x-amzn-ErrorType": "PayloadTooLargeException"}
                return 413, headers, b'{"message": "Message too long"}'
            try:
                connection.send_message(body)
            except Gone:
                return _gone(connection_id)
            return 200, dict(JSON), b""
        if method == "DELETE":
            return (
                (204, {}, b"")
                if connection.close(1000, "Connection Closed Normally")
                else _gone(connection_id)
            )
        if method == "GET":
            peer = connection.peer
            return 200, dict(JSON), json.dumps({
                "connectedAt": _iso(peer.connected_at),
                "identity": {"sourceIp": peer.source_ip, "userAgent": peer.user_agent},
                "lastActiveAt": _iso(connection.last_active_at),
            }).encode()  # fmt: skip
        return 404, dict(JSON), b'{"message": "Not Found"}'

    def _outage(self, method: str, body: bytes) -> Reply:
        if method == "DELETE":
            self._down_until = 0.0
            return 200, dict(JSON), b'{"outage": false}'
        try:
            seconds = float(json.loads(body or b"{}").get("seconds", 30))
        except (ValueError, AttributeError):
            return 400, dict(JSON), b'{"message": "expected a JSON body {\\"seconds\\": <number>}"}'
        with self._lock:
            self._down_until = time.monotonic() + seconds
            connections = list(self._connections.values())
        for connection in connections:
            connection.drop()
        answer = {"outage": True, "seconds": seconds, "dropped": len(connections)}
        return 200, dict(JSON), json.dumps(answer).encode()

    def close_all(self, wait_s: float = 5.0) -> None:
        """Stopping: every open connection is closed with 1001 (its ``$disconnect`` invoked), and
        waited for, ``wait_s`` at most."""
        with self._lock:
            connections = list(self._connections.values())
        for connection in connections:
            connection.close(1001, "Going away")
        deadline = time.monotonic() + wait_s
        for connection in connections:
            connection.finished.wait(max(deadline - time.monotonic(), 0))


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"
