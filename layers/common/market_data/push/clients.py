"""The management API's client (post to a connection, close it) and the broadcaster's starter,
each created once per container with explicit timeouts and a pool sized to the posts in flight."""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

import orjson
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from market_data.errors import UnavailableError, translating

if TYPE_CHECKING:
    from market_data.config import Settings


class PushUnavailableError(UnavailableError):
    """API Gateway's management API or Lambda's Invoke API failed (not a gone connection)."""


translated = translating(lambda: (BotoCoreError, ClientError), PushUnavailableError)


class Poster:
    """Posts messages to WebSocket connections. A connection API Gateway no longer has answers
    410 (GoneException): ``post`` returns False for it, and the caller forgets the connection."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._gone = client.exceptions.GoneException

    @translated
    def post(self, connection_id: str, message: bytes) -> bool:
        try:
            self._client.post_to_connection(ConnectionId=connection_id, Data=message)
        except self._gone:
            return False
        return True

    @translated
    def close(self, connection_id: str) -> None:
        with contextlib.suppress(self._gone):
            self._client.delete_connection(ConnectionId=connection_id)


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
    # A post is one small request: a slow one is given up quickly rather than holding a slot of
    # the pool, and it is not retried (the next slot's message supersedes it).
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

            client = boto3.client(
                "apigatewaymanagementapi",
                endpoint_url=settings.stream_management_url,
                config=_config(settings.broadcast_concurrency + 4),
            )
            _poster = Poster(client)
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
