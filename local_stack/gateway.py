"""A local stand-in for the HTTP API: routes from template.yaml, requests as v2 (HTTP API) events.

Why this is hand-written: the maintained emulators either need Docker (``sam local start-api``,
LocalStack) or serve one handler with partial v2 events (lambda-gateway: no route keys, no
source IP, no path parameters). What is here is only the request/event translation and CORS;
the handlers themselves are the production ones, invoked in-process.

Routes the template marks ``Auth: {Authorizer: AWS_IAM}`` need SigV4 on AWS; here the stand-in is
``Authorization: Bearer <token>`` (``ADMIN_TOKEN``, or the token the stack keeps in
``.local/admin-token``: admin_token.py), and a request that passes gets the ``authorizer.iam`` block
AWS adds to the event, so the handler's own check runs the same way locally and on AWS.
"""

from __future__ import annotations

import base64
import hmac
import importlib
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from local_stack.lambda_context import LocalLambdaContext
from local_stack.template import HttpRoute

if TYPE_CHECKING:
    from local_stack.lambda_api import LocalLambdaApi
    from local_stack.websocket import LocalWebSocketApi

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's own payload limit
JSON_HEADERS = {"Content-Type": "application/json"}
# What API Gateway puts in requestContext.authorizer.iam for a SigV4-signed call (the local admin).
LOCAL_ADMIN_IAM: dict[str, Any] = {
    "accessKey": "AKIALOCALADMIN000000",
    "accountId": "000000000000",
    "callerId": "AIDALOCALADMIN000000",
    "cognitoIdentity": None,
    "principalOrgId": None,
    "userArn": "arn:aws:iam::000000000000:user/local-admin",
    "userId": "AIDALOCALADMIN000000",
}


@dataclass(frozen=True)
class BoundRoute:
    route: HttpRoute
    pattern: re.Pattern[str]
    handler: Callable[[dict[str, Any], Any], Any]

    @property
    def route_key(self) -> str:
        return f"{self.route.method} {self.route.path}"


def _path_pattern(path: str) -> re.Pattern[str]:
    """API Gateway path syntax to a regex: {name} is one segment, {name+} is the greedy rest."""
    regex = re.sub(r"\\\{(\w+)\\\+\\\}", r"(?P<\1>.+)", re.escape(path))
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", regex)
    return re.compile(f"^{regex}$")


def load_handler(dotted: str) -> Callable[[dict[str, Any], Any], Any]:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def bind_routes(routes: list[HttpRoute]) -> list[BoundRoute]:
    """Import each route's handler once; literal paths win over parameterised ones, as on AWS."""
    bound = [
        BoundRoute(r, _path_pattern(r.path), load_handler(r.handler)) for r in routes if r.path != "$default"
    ]
    return sorted(bound, key=lambda b: (b.route.path.count("{"), -len(b.route.path)))


def build_event(
    *, method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str, route_key: str,
    path_parameters: dict[str, str],
) -> dict[str, Any]:  # fmt: skip
    """The event API Gateway HTTP APIs send with payload format 2.0."""
    url = urlsplit(target)
    query: dict[str, str] = {}
    for name, value in parse_qsl(url.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value  # v2 joins repeats with ","
    try:
        text, is_base64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, is_base64 = base64.b64encode(body).decode(), True
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": url.path,
        "rawQueryString": url.query,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": url.path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": is_base64,
    }
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if "cookie" in headers:
        event["cookies"] = [c.strip() for c in headers["cookie"].split(";")]
    if body:
        event["body"] = text
    return event


class LocalHttpApi:
    """Matches a request to a route, invokes its handler in-process, applies the template's CORS.

    ``admin_token`` stands in for IAM on the routes that require it; without one they refuse everyone.
    """

    def __init__(
        self,
        routes: list[HttpRoute],
        *,
        cors_origins: list[str],
        admin_token: str | None = None,
        local_pages: dict[str, Callable[[], str]] | None = None,
    ) -> None:
        self.routes = bind_routes(routes)
        self.local_pages = local_pages or {}  # GET path -> plain text: local-only views, not on AWS
        self.cors_origins = cors_origins
        self.admin_token = admin_token
        self.allowed_methods = ",".join(sorted({r.method for r in routes if r.method != "ANY"} | {"OPTIONS"}))

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str
    ) -> tuple[int, dict[str, str], bytes]:
        path = urlsplit(target).path
        origin = headers.get("origin")
        if method == "OPTIONS" and origin and "access-control-request-method" in headers:
            return 204, self._cors_headers(origin, preflight=True), b""
        if method == "GET" and path in self.local_pages:
            return 200, {"Content-Type": "text/plain; charset=utf-8"}, self.local_pages[path]().encode()
        for bound in self.routes:
            match = bound.pattern.match(path)
            if match and bound.route.method in (method, "ANY"):
                refused = self._refuse_unauthorised(headers) if bound.route.iam else None
                if refused is not None:
                    return refused[0], {**JSON_HEADERS, **self._cors_headers(origin)}, refused[1]
                event = build_event(
                    method=method, target=target, headers=headers, body=body, source_ip=source_ip,
                    route_key=bound.route_key, path_parameters=match.groupdict(),
                )  # fmt: skip
                if bound.route.iam:
                    event["requestContext"]["authorizer"] = {"iam": dict(LOCAL_ADMIN_IAM)}
                status, response_headers, payload = self._invoke(bound, event)
                return status, {**response_headers, **self._cors_headers(origin)}, payload
        return 404, dict(JSON_HEADERS), b'{"message":"Not Found"}'

    def _refuse_unauthorised(self, headers: dict[str, str]) -> tuple[int, bytes] | None:
        """API Gateway's answers for an IAM route: 401 without credentials, 403 with wrong ones."""
        authorization = headers.get("authorization")
        if not authorization:
            return 401, b'{"message":"Unauthorized"}'
        scheme, _, token = authorization.partition(" ")
        expected = self.admin_token
        if not expected or scheme.lower() != "bearer":
            return 403, b'{"message":"Forbidden"}'
        if not hmac.compare_digest(token.strip().encode(), expected.encode()):
            return 403, b'{"message":"Forbidden"}'
        return None

    def _invoke(self, bound: BoundRoute, event: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        context = LocalLambdaContext(bound.route.function_logical_id, bound.route.timeout_seconds)
        try:
            result = bound.handler(event, context)
        except Exception:  # what API Gateway answers when the function itself fails
            return 500, {"Content-Type": "application/json"}, b'{"message":"Internal Server Error"}'
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else str(payload).encode()
        return int(result.get("statusCode", 200)), headers, data

    def _cors_headers(self, origin: str | None, *, preflight: bool = False) -> dict[str, str]:
        if not origin or not ("*" in self.cors_origins or origin in self.cors_origins):
            return {}
        headers = {
            "Access-Control-Allow-Origin": "*" if "*" in self.cors_origins else origin,
            "Access-Control-Expose-Headers": "X-Missing-Pairs,X-Not-Listed-Pairs,Retry-After",
        }
        if preflight:
            headers.update({
                "Access-Control-Allow-Methods": self.allowed_methods,
                "Access-Control-Allow-Headers": "Content-Type,Authorization",
                "Access-Control-Max-Age": "600",
            })  # fmt: skip
        return headers


def make_server(
    api: LocalHttpApi, host: str, port: int, *, websocket: LocalWebSocketApi | None = None,
    lambdas: LocalLambdaApi | None = None,
) -> ThreadingHTTPServer:  # fmt: skip
    """The HTTP API on ``host:port``; with ``websocket``, its WebSocket endpoint and management API
    (local_stack/websocket.py), with ``lambdas`` Lambda's Invoke API (local_stack/lambda_api.py), on
    the same port, as the functions' clients reach them through one local address."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            if websocket is not None and self.command == "GET" and urlsplit(self.path).path == websocket.path:
                self.close_connection = True  # the socket is the WebSocket's until it closes
                websocket.serve(self)
                return
            declared = self.headers.get("Content-Length")
            if declared is None and self.headers.get("Transfer-Encoding"):
                # A body of unknown length (chunked): API Gateway wants its length up front.
                self._reply(411, {"Content-Type": "application/json"}, b'{"message":"Length Required"}')
                self.close_connection = True
                return
            if declared is not None and not declared.strip().isdigit():
                # -1 or garbage: reading "up to" it would wait for the client to close.
                self._reply(400, {"Content-Type": "application/json"}, b'{"message":"Bad Request"}')
                self.close_connection = True
                return
            length = int(declared or 0)
            if length > MAX_BODY_BYTES:
                self._reply(
                    413, {"Content-Type": "application/json"}, b'{"message":"Request Entity Too Large"}'
                )
                return
            body = self.rfile.read(length) if length else b""
            headers: dict[str, str] = {}
            for name, value in self.headers.items():
                key = name.lower()
                headers[key] = f"{headers[key]},{value}" if key in headers else value
            request = (self.command, self.path, headers, body, self.client_address[0])
            for side in (websocket, lambdas):
                answer = side.handle(*request) if side is not None else None
                if answer is not None:
                    self._reply(*answer)
                    return
            self._reply(*api.handle(*request))

        def _reply(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            self.send_response(
                status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
            )
            for name, value in headers.items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve

        def __getattr__(self, name: str) -> Any:
            # Any other method (TRACE, PROPFIND, ...) is routed like the rest, so an undeclared one
            # gets API Gateway's 404 {"message":"Not Found"}, not the standard library's 501.
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the handlers log what matters; one line per poll would drown it

    server = _Server((host, port), Handler)
    server.daemon_threads = True
    return server


class _Server(ThreadingHTTPServer):
    # socketserver's listen backlog is 5: a broadcaster opening its posting connections all at
    # once (48 per invocation) would have some refused with a reset, which API Gateway never does.
    request_queue_size = 1024
