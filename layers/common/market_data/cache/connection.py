"""The process-wide cache client, and the one error the rest of the service sees when it fails."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisClusterException, RedisError

from market_data.errors import UnavailableError, translating

if TYPE_CHECKING:
    from redis import Redis

    from market_data.config import Settings

# What an unreachable or failing cache raises: the cluster client reports a dead cluster with an
# exception outside RedisError's family.
_REDIS_FAILURES = (RedisError, RedisClusterException)


class CacheUnavailableError(UnavailableError):
    """The cache could not be reached or answered with an error."""


translated = translating(lambda: _REDIS_FAILURES, CacheUnavailableError)


_client: Redis | None = None
_read_client: Redis | None = None
_building = threading.Lock()


def _options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout_s,
        "socket_connect_timeout": settings.redis_timeout_s,
    }
    if settings.redis_tls_ca_file:
        options["ssl_ca_certs"] = settings.redis_tls_ca_file
    return options


@translated
def get_client(settings: Settings) -> Redis:
    """The process-wide client, created on first use with explicit timeouts.

    ``REDIS_CLUSTER=true`` picks the cluster client (ElastiCache Serverless speaks only that);
    ``rediss://`` turns TLS on in either.
    """
    global _client
    if _client is None:
        options = _options(settings)
        if settings.redis_cluster:
            from redis.cluster import RedisCluster

            url = settings.redis_url
            _client = DeferredClient(lambda: RedisCluster.from_url(url, **options))  # type: ignore[assignment]
        else:
            from redis import Redis

            _client = Redis.from_url(settings.redis_url, health_check_interval=30, **options)
    return _client  # type: ignore[return-value]  # set above; mypy cannot see through the global


@translated
def get_read_client(settings: Settings) -> Redis:
    """The client of the price reads: one connection, no pool.

    A Lambda container serves one request at a time, so a pool's checkout and return around every
    command (a tenth of a read's time on loopback) buys nothing; threads that share it (the local
    stack's) take turns on its lock. It connects when built: a failure is the caller's
    CacheUnavailableError, and the next read builds it again. The cluster client keeps a connection
    per node of its own, so in cluster mode this is the process-wide client.
    """
    global _read_client
    if settings.redis_cluster:
        return get_client(settings)
    client = _read_client
    if client is None:
        with _building:  # threads sharing the process (the local stack's) build it once
            if _read_client is None:
                from redis import Redis

                _read_client = Redis.from_url(
                    settings.redis_url, single_connection_client=True, health_check_interval=30,
                    **_options(settings),
                )  # fmt: skip
            client = _read_client
    return client


class DeferredClient:
    """A client built on first use, and built again on the next use after a failed build.

    The cluster client connects while it is built (it reads the slot map), so building it eagerly
    would make a container started during a cache outage fail before it could fall back to
    DynamoDB, and a failed build would never be retried. Here the failure surfaces at the first
    command, where the callers already expect it, and the cache is used again once it is back.
    """

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._client: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        client = self._client
        if client is None:
            with self._lock:  # the fetcher's threads share one client: build it once
                if self._client is None:
                    self._client = self._build()
                client = self._client
        return getattr(client, name)


def reset_client() -> None:
    """Forget the process-wide clients (tests and the local stack point them elsewhere)."""
    global _client, _read_client
    _client = _read_client = None
