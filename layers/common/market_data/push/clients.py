"""The management API's client (post to a connection, close it) and the broadcaster's starter,
each created once per container with explicit timeouts."""

from __future__ import annotations

import http.client
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.httpsession import get_cert_path
from botocore.utils import percent_encode

from market_data.errors import UnavailableError, translating

if TYPE_CHECKING:
    from market_data.config import Settings


class PushUnavailableError(UnavailableError):
    """API Gateway's management API or Lambda's Invoke API failed (not a gone connection)."""


SIGNING_NAME = "execute-api"  # the management API is signed as API Gateway's execute-api
HEADERS = {"Content-Type": "application/json"}
# A post is one small request: a slow one is given up quickly rather than holding a posting
# thread, and a failed one is not tried again (the next slot's message supersedes it).
POST_TIMEOUT_S = 2.0


class PostFailedError(Exception):
    """The management API answered a post or a close with a status other than success or 410."""

    def __init__(self, method: str, connection_id: str, status: int, body: bytes) -> None:
        super().__init__(f"{method} @connections/{connection_id} answered {status}: {body[:200]!r}")
        self.status = status


translated = translating(
    lambda: (BotoCoreError, ClientError, PostFailedError, http.client.HTTPException, OSError),
    PushUnavailableError,
)


class Poster:
    """Posts messages to WebSocket connections through API Gateway's management API
    (``POST``/``DELETE {endpoint}/@connections/{id}``). A connection API Gateway no longer has
    answers 410 (GoneException): ``post`` returns False for it, and the caller forgets it.

    Not the SDK's ``apigatewaymanagementapi`` client: a post is one small signed request, and the
    SDK's work around it (parameter validation, serialising, its event hooks, the retry handler)
    was 2-4 x the CPU of the request itself (docs/benchmarks.md#push-over-websocket), which on a
    fraction of a vCPU is what a fan-out's last client waits for. The signing is botocore's own
    SigV4 signer; each posting thread keeps one connection alive between posts and slots."""

    def __init__(self, endpoint_url: str, region: str, credentials: Callable[[], Any]) -> None:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint_url!r}")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._https, self._netloc = parts.scheme == "https", parts.netloc
        self._stage_path = parts.path.rstrip("/")
        self._region, self._credentials = region, credentials
        self._local = threading.local()
        self._tls = ssl.create_default_context(cafile=get_cert_path(True)) if self._https else None

    @translated
    def post(self, connection_id: str, message: bytes) -> bool:
        status, body = self._send("POST", connection_id, message)
        if status == 410:
            return False
        if status != 200:
            raise PostFailedError("POST", connection_id, status, body)
        return True

    @translated
    def close(self, connection_id: str) -> None:
        status, body = self._send("DELETE", connection_id, b"")
        if status not in (200, 204, 410):
            raise PostFailedError("DELETE", connection_id, status, body)

    def _send(self, method: str, connection_id: str, body: bytes) -> tuple[int, bytes]:
        # The id is one path segment, encoded as the SDK encodes a URI label.
        path = f"{self._stage_path}/@connections/{percent_encode(connection_id)}"
        request = AWSRequest(method=method, url=self._origin + path, data=body, headers=dict(HEADERS))
        SigV4Auth(self._credentials(), SIGNING_NAME, self._region).add_auth(request)
        headers = dict(request.headers.items())
        while True:
            connection = getattr(self._local, "connection", None)
            reused = connection is not None
            if connection is None:
                connection = self._local.connection = self._connect()
            try:
                return self._exchange(connection, method, path, body, headers)
            except (http.client.HTTPException, OSError):
                connection.close()
                self._local.connection = None
                if not reused:
                    raise
            # The kept-alive connection had been closed by the other end while idle, before it
            # read this request: sent again once, on a new one (a rare duplicate is harmless: a
            # client holds the latest entry per pair, and an update names its slot).

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._netloc, timeout=POST_TIMEOUT_S, context=self._tls)
        return http.client.HTTPConnection(self._netloc, timeout=POST_TIMEOUT_S)

    @staticmethod
    def _exchange(
        connection: http.client.HTTPConnection, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read()


class BroadcastStarter:
    """Starts a broadcaster invocation without waiting for it (Lambda's asynchronous invoke)."""

    def __init__(self, client: Any, function_name: str) -> None:
        self._client, self.function_name = client, function_name

    @translated
    def start(self, payload: dict[str, Any]) -> None:
        self._client.invoke(
            FunctionName=self.function_name, InvocationType="Event", Payload=orjson.dumps(payload)
        )


_lock = threading.Lock()
_poster: Poster | None = None
_starter: BroadcastStarter | None = None


def _config(pool: int) -> Config:
    # An asynchronous Invoke is one small request, not retried: the next slot starts another.
    return Config(
        connect_timeout=1,
        read_timeout=2,
        retries={"max_attempts": 1, "mode": "standard"},
        max_pool_connections=pool,
    )


def get_poster(settings: Settings) -> Poster:
    global _poster
    with _lock:
        if _poster is None:
            if not settings.stream_management_url:
                raise PushUnavailableError(LookupError("STREAM_MANAGEMENT_URL is not set"))
            import boto3

            session = boto3.Session()
            credentials = session.get_credentials()
            if credentials is None or not session.region_name:
                raise PushUnavailableError(LookupError("no AWS credentials or region to sign posts with"))
            # Frozen per post: Lambda's are fixed for the container, a refreshing provider renews.
            _poster = Poster(
                settings.stream_management_url, session.region_name, credentials.get_frozen_credentials
            )
        return _poster


def get_broadcast_starter(settings: Settings) -> BroadcastStarter | None:
    """None when no broadcaster is configured: nothing is pushed."""
    global _starter
    if not settings.broadcaster_function_name:
        return None
    with _lock:
        if _starter is None:
            import boto3

            client = boto3.client("lambda", config=_config(4))
            _starter = BroadcastStarter(client, settings.broadcaster_function_name)
        return _starter


def reset_clients() -> None:
    """Forget the clients (tests and the local stack point them elsewhere)."""
    global _poster, _starter
    with _lock:
        _poster = _starter = None
