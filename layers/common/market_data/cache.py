"""All Redis/Valkey access: the only module that knows key names and commands.

Every key carries the hash tag ``{md}``, so all of them live in one cluster slot: the same
pipelines run on ElastiCache Serverless (cluster mode, TLS) and on a single local node, and a
read is one round trip whatever the number of pairs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import RedisClusterException, RedisError

if TYPE_CHECKING:
    from redis import Redis

    from market_data.config import Settings

TAG = "{md}"
LISTED_PAIRS = f"{TAG}:listed"  # SET of the pairs the service serves
SUSPENDED_PAIRS = f"{TAG}:suspended"  # SET of listed pairs the exchange stopped trading
STALE_COPIES = f"{TAG}:last"  # HASH pair -> newest ticker JSON, long-lived (the "stale copy")
# Two more fields of STALE_COPIES, so one HMGET answers a prices request: the listed and the
# suspended pairs as JSON lists. A field without "/" can never be a pair's.
LISTED_FIELD = "_listed"
SUSPENDED_FIELD = "_suspended"
META_FIELDS = frozenset({LISTED_FIELD, SUSPENDED_FIELD})
STATS = f"{TAG}:stats"  # HASH of fetcher counters and last results
HEARTBEAT = f"{TAG}:heartbeat"  # JSON, written every slot by every running fetcher invocation
HELD_PRICES = f"{TAG}:held"  # HASH pair -> a jumped price waiting for the next tick to confirm it
LKG_WRITTEN = f"{TAG}:lkg-written"  # HASH pair -> ms of the last DynamoDB last-known-good write
# HASH "exchange|pair" -> "until,failures": pairs held off an exchange they failed on, shared by
# every invocation so that overlapping ones route a failing pair the same way.
FAILURE_HOLDS = f"{TAG}:holds"
# HASH exchange -> epoch ms: no request to that exchange before then (Coinbase's and Kraken's
# request pacing, carried from one invocation's slot to the next one's).
PACE = f"{TAG}:pace"
# Per-minute windows of the prices API's own figures, summed over every container (for health).
READS_WINDOW_MS = 60_000
READS_WINDOW_TTL_MS = 3 * READS_WINDOW_MS
READ_LATENCY_SAMPLES_KEPT = 1_000  # per window: enough for a p99, small enough to read every time

# The stale copy outlives any outage worth serving through; after a week a price is history.
STALE_COPY_TTL_MS = 7 * 24 * 3_600_000
# Heartbeats expire on their own so a dead fetcher leaves no "running" trace behind.
HEARTBEAT_TTL_MS = 10 * 60_000
STATS_COUNTERS = ("fetchAttempts", "fetchSuccesses", "fetchErrors", "invalidTickers", "priceJumpsHeld")
# What an unreachable or failing cache raises: the cluster client reports a dead cluster with an
# exception outside RedisError's family.
CACHE_ERRORS = (RedisError, RedisClusterException)


def fresh_key(pair: str) -> str:
    return f"{TAG}:fresh:{pair}"


def ban_key(exchange: str) -> str:
    """JSON {until, status, reason}: no call to ``exchange`` before ``until``."""
    return f"{TAG}:ban:{exchange}"


def circuit_key(exchange: str) -> str:
    """HASH: ``exchange``'s circuit breaker (state, failures, opens, retryAt)."""
    return f"{TAG}:circuit:{exchange}"


def kept_key(exchange: str) -> str:
    """HASH: ``exchange``'s slow-moving figures (Coinbase's 24 h stats, Kraken's rolling opens),
    key -> JSON, shared so that no invocation reads again what another has just read."""
    return f"{TAG}:kept:{exchange}"


# The whole hash goes when no invocation has written to it for this long (each figure is aged on its own
# by the fetcher, which deletes the ones too old to serve).
KEPT_TTL_MS = 2 * 3_600_000


def claim_key(slot: int) -> str:
    return f"{TAG}:claim:{slot}"


def reads_key(window: int) -> str:
    """HASH of counts (pairs served fresh, stale, ...) of one minute of prices requests."""
    return f"{TAG}:reads:{window}"


def read_latency_key(window: int) -> str:
    """LIST of read latencies (microseconds) of one minute of prices requests, newest first."""
    return f"{TAG}:read-latency:{window}"


_client: Redis | None = None


def get_client(settings: Settings) -> Redis:
    """The process-wide client, created on first use with explicit timeouts.

    ``REDIS_CLUSTER=true`` picks the cluster client (ElastiCache Serverless speaks only that);
    ``rediss://`` turns TLS on in either.
    """
    global _client
    if _client is None:
        options: dict[str, Any] = {
            "socket_timeout": settings.redis_timeout_s,
            "socket_connect_timeout": settings.redis_timeout_s,
        }
        if settings.redis_tls_ca_file:
            options["ssl_ca_certs"] = settings.redis_tls_ca_file
        if settings.redis_cluster:
            from redis.cluster import RedisCluster

            _client = RedisCluster.from_url(settings.redis_url, **options)  # type: ignore[assignment]
        else:
            from redis import Redis

            _client = Redis.from_url(settings.redis_url, health_check_interval=30, **options)
    return _client  # type: ignore[return-value]  # set above; mypy cannot see through the global


def reset_client() -> None:
    """Forget the process-wide client (tests and the local stack point it elsewhere)."""
    global _client
    _client = None


# --------------------------------------------------------------------------- read side


@dataclass(frozen=True)
class CachedPrices:
    """What one read returned: listed pairs and, per listed pair, the newest ticker JSON."""

    populated: bool  # False: the cache holds no listed set (cold, flushed or failed over)
    listed: frozenset[str]
    tickers: dict[str, bytes]
    suspended: frozenset[str] = frozenset()  # served from their last copy, always flagged stale


@lru_cache(maxsize=8)
def _pair_set(raw: bytes) -> frozenset[str]:
    """The listed or suspended pairs from their JSON list, decoded once per change: every read
    carries them, and they change only when the registry does."""
    return frozenset(orjson.loads(raw))


def read_prices(client: Redis, pairs: Sequence[str] | None) -> CachedPrices:
    """One command: which pairs are listed or suspended, and their newest tickers.

    The stale-copy hash is written in the same transaction and with the same bytes as the fresh
    keys, so it always holds the newest ticker: reading it alone serves a fresh key's value when
    one exists and the stale copy when the fresh key has expired, without a second lookup. The
    listed and suspended pairs ride in the same hash, so a request costs what a plain MGET does.
    """
    if pairs is None:
        everything: dict[bytes, bytes] = client.hgetall(STALE_COPIES)  # type: ignore[assignment]  # sync client
        found = {key.decode(): value for key, value in everything.items()}
        raw_listed, raw_suspended = found.pop(LISTED_FIELD, None), found.pop(SUSPENDED_FIELD, None)
        listed = _pair_set(raw_listed) if raw_listed else frozenset()
        tickers = {pair: value for pair, value in found.items() if pair in listed}
    else:
        answer: list[bytes | None] = client.hmget(  # type: ignore[assignment]  # sync client
            STALE_COPIES, [*pairs, LISTED_FIELD, SUSPENDED_FIELD]
        )
        *copies, raw_listed, raw_suspended = answer
        listed_all = _pair_set(raw_listed) if raw_listed else frozenset()
        listed = frozenset(pair for pair in pairs if pair in listed_all)
        tickers = {
            pair: value
            for pair, value in zip(pairs, copies, strict=True)
            if value is not None and pair in listed
        }
    suspended = _pair_set(raw_suspended) if raw_suspended else frozenset()
    return CachedPrices(raw_listed is not None, listed, tickers, suspended)


@dataclass(frozen=True)
class FetcherRecord:
    stats: dict[str, str]
    heartbeat: dict[str, Any] | None
    bans: dict[str, dict[str, Any]]  # exchange -> its ban, while one lasts
    listed: frozenset[str]
    circuits: dict[str, dict[str, str]] = field(default_factory=dict)  # exchange -> breaker fields
    read_counts: dict[str, int] = field(default_factory=dict)  # prices requests, this and last minute
    read_latencies_us: list[int] = field(default_factory=list)


def read_fetcher_record(client: Redis, *, now_ms: int, exchanges: Sequence[str]) -> FetcherRecord:
    """Stats, heartbeat, each exchange's ban and circuit, listed pairs and the read windows in one
    round trip (for health)."""
    window = now_ms // READS_WINDOW_MS
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(STATS)
    pipe.get(HEARTBEAT)
    pipe.smembers(LISTED_PAIRS)
    for exchange in exchanges:
        pipe.get(ban_key(exchange))
        pipe.hgetall(circuit_key(exchange))
    for minute in (window - 1, window):
        pipe.hgetall(reads_key(minute))
        pipe.lrange(read_latency_key(minute), 0, -1)
    stats, heartbeat, members, *rest = pipe.execute()
    per_exchange, windows = rest[: 2 * len(exchanges)], rest[2 * len(exchanges) :]
    read_counts: dict[str, int] = {}
    latencies: list[int] = []
    for counts, samples in zip(windows[::2], windows[1::2], strict=True):
        for key, value in counts.items():
            read_counts[key.decode()] = read_counts.get(key.decode(), 0) + int(value)
        latencies.extend(int(sample) for sample in samples)
    return FetcherRecord(
        stats={key.decode(): value.decode() for key, value in stats.items()},
        heartbeat=orjson.loads(heartbeat) if heartbeat else None,
        bans=_bans(exchanges, per_exchange[::2]),
        listed=frozenset(member.decode() for member in members),
        circuits=_circuits(exchanges, per_exchange[1::2]),
        read_counts=read_counts,
        read_latencies_us=latencies,
    )


def _bans(exchanges: Sequence[str], raws: Sequence[bytes | None]) -> dict[str, dict[str, Any]]:
    return {exchange: orjson.loads(raw) for exchange, raw in zip(exchanges, raws, strict=True) if raw}


def _circuits(exchanges: Sequence[str], raws: Sequence[dict[bytes, bytes]]) -> dict[str, dict[str, str]]:
    return {
        exchange: {key.decode(): value.decode() for key, value in fields.items()}
        for exchange, fields in zip(exchanges, raws, strict=True)
    }


def record_reads(
    client: Redis, counts: Mapping[str, float], latencies_ms: Sequence[float], *, now_ms: int
) -> None:
    """Add one container's window of prices requests to this minute's shared figures (one round
    trip per window, not per request)."""
    window = now_ms // READS_WINDOW_MS
    counts_key, latency_key = reads_key(window), read_latency_key(window)
    pipe = client.pipeline(transaction=False)
    for name, value in counts.items():
        pipe.hincrby(counts_key, name, int(value))
    pipe.pexpire(counts_key, READS_WINDOW_TTL_MS)
    if latencies_ms:
        pipe.lpush(latency_key, *(round(sample * 1000) for sample in latencies_ms))
        pipe.ltrim(latency_key, 0, READ_LATENCY_SAMPLES_KEPT - 1)
        pipe.pexpire(latency_key, READS_WINDOW_TTL_MS)
    pipe.execute()


# --------------------------------------------------------------------------- fetcher side


@dataclass(frozen=True)
class SlotStart:
    """What the fetcher learns when it opens a slot."""

    claimed: bool  # this invocation owns the slot's exchange fetch
    bans: dict[str, dict[str, Any]]  # exchange -> its ban, while one lasts
    cached_pairs: frozenset[str]  # pairs that have a stale copy (to drop the unlisted ones)
    lkg_written: dict[str, int]  # pair -> ms of its last DynamoDB write
    cache_ok: bool = True  # False: the cache is unreachable and DynamoDB coordinates this slot
    circuits: dict[str, dict[str, str]] = field(default_factory=dict)  # exchange -> breaker fields
    holds: dict[str, str] | None = None  # FAILURE_HOLDS's fields; None when the cache is lost
    pace: dict[str, int] = field(default_factory=dict)  # exchange -> no request before (epoch ms)
    kept: dict[str, dict[str, bytes]] = field(default_factory=dict)  # exchange -> kept figures


def open_slot(
    client: Redis,
    *,
    slot: int,
    owner: str,
    interval_ms: int,
    heartbeat: dict[str, Any],
    exchanges: Sequence[str],
) -> SlotStart:
    """Write the heartbeat and try to claim the slot (``SET NX PX``), in one round trip, with what
    the tick needs to know first: each exchange's ban and circuit.

    The claim outlives the slot by two intervals so an overlapping invocation whose clock lags
    a little still finds it taken.
    """
    pipe = client.pipeline(transaction=False)
    pipe.set(HEARTBEAT, orjson.dumps(heartbeat), px=HEARTBEAT_TTL_MS)
    pipe.set(claim_key(slot), owner, nx=True, px=3 * interval_ms)
    pipe.hkeys(STALE_COPIES)
    pipe.hgetall(LKG_WRITTEN)
    pipe.hgetall(FAILURE_HOLDS)
    pipe.hgetall(PACE)
    for exchange in exchanges:
        pipe.get(ban_key(exchange))
        pipe.hgetall(circuit_key(exchange))
        pipe.hgetall(kept_key(exchange))
    _, claimed, cached, written, holds, pace, *per_exchange = pipe.execute()
    return SlotStart(
        claimed=bool(claimed),
        bans=_bans(exchanges, per_exchange[::3]),
        cached_pairs=frozenset(key.decode() for key in cached) - META_FIELDS,
        lkg_written={key.decode(): int(value) for key, value in written.items()},
        circuits=_circuits(exchanges, per_exchange[1::3]),
        kept={
            exchange: {key.decode(): value for key, value in figures.items()}
            for exchange, figures in zip(exchanges, per_exchange[2::3], strict=True)
            if figures
        },
        holds={key.decode(): value.decode() for key, value in holds.items()},
        pace={key.decode(): int(value) for key, value in pace.items() if value.isdigit()},
    )


def write_heartbeat(client: Redis, heartbeat: dict[str, Any]) -> None:
    client.set(HEARTBEAT, orjson.dumps(heartbeat), px=HEARTBEAT_TTL_MS)


def set_ban(client: Redis, exchange: str, *, until_ms: int, now_ms: int, status: int, reason: str) -> None:
    """Remember a ban for every invocation: no call to ``exchange`` before ``until_ms``."""
    body = orjson.dumps({"until": until_ms, "status": status, "reason": reason, "since": now_ms})
    client.set(ban_key(exchange), body, px=max(until_ms - now_ms, 1))


@dataclass(frozen=True)
class TickWrite:
    tickers: dict[str, bytes]  # pair -> validated ticker JSON
    listed: Sequence[str]
    unlisted_copies: Iterable[str]  # stale copies of pairs no longer listed
    counters: dict[str, int]  # increments of STATS_COUNTERS
    fields: dict[str, str]  # other STATS fields, replaced
    suspended: Sequence[str] = ()  # listed pairs served only from their last copy
    held: dict[str, float] = field(default_factory=dict)  # jumped prices waiting for confirmation
    circuits: dict[str, dict[str, str]] = field(default_factory=dict)  # exchange -> breaker fields
    holds: dict[str, str] = field(default_factory=dict)  # FAILURE_HOLDS's fields this tick changed
    holds_ended: Sequence[str] = ()  # FAILURE_HOLDS's fields this tick removed
    pace: dict[str, int] = field(default_factory=dict)  # PACE's fields to set
    kept: dict[str, dict[str, bytes]] = field(default_factory=dict)  # exchange -> figures read this tick
    kept_unusable: dict[str, list[str]] = field(default_factory=dict)  # exchange -> figures to delete


def read_previous(client: Redis, pairs: Sequence[str]) -> tuple[dict[str, float], dict[str, float]]:
    """Last good prices and held (unconfirmed) prices of ``pairs``, in one round trip."""
    if not pairs:
        return {}, {}
    pipe = client.pipeline(transaction=False)
    pipe.hmget(STALE_COPIES, list(pairs))
    pipe.hmget(HELD_PRICES, list(pairs))
    copies, held = pipe.execute()
    last_good = {
        pair: float(orjson.loads(raw)["price"]) for pair, raw in zip(pairs, copies, strict=True) if raw
    }
    unconfirmed = {pair: float(raw) for pair, raw in zip(pairs, held, strict=True) if raw}
    return last_good, unconfirmed


def record_write_timings(client: Redis, *, cache_write_ms: int, sync_gaps_ms: Sequence[int]) -> None:
    """What a tick's write took and how far behind the exchange it made prices visible; measured
    once the write has returned, so it is stored just after it."""
    fields = {"lastCacheWriteMs": str(cache_write_ms)}
    if sync_gaps_ms:
        ordered = sorted(sync_gaps_ms)
        fields["syncGapP50Ms"] = str(ordered[(len(ordered) - 1) // 2])
        fields["syncGapMaxMs"] = str(ordered[-1])
        client.hset(STATS, mapping=fields)
    else:
        pipe = client.pipeline(transaction=False)
        pipe.hset(STATS, mapping=fields)
        pipe.hdel(STATS, "syncGapP50Ms", "syncGapMaxMs")  # nothing written: no gap to report
        pipe.execute()


def record_lkg_writes(client: Redis, written: dict[str, int]) -> None:
    client.hset(LKG_WRITTEN, mapping={pair: str(at) for pair, at in written.items()})


def write_tick(client: Redis, write: TickWrite, *, fresh_ttl_ms: int) -> None:
    """Everything one tick produced, in one MULTI/EXEC (one round trip, all keys in one slot).

    A reader never sees half a tick: the listed set is replaced and the tickers land together.
    """
    pipe = client.pipeline(transaction=True)
    for pair, body in write.tickers.items():
        pipe.set(fresh_key(pair), body, px=fresh_ttl_ms)
    pipe.hset(
        STALE_COPIES,
        mapping={
            **write.tickers,
            LISTED_FIELD: orjson.dumps(sorted(write.listed)),
            SUSPENDED_FIELD: orjson.dumps(sorted(write.suspended)),
        },
    )
    pipe.pexpire(STALE_COPIES, STALE_COPY_TTL_MS)
    unlisted = list(write.unlisted_copies)
    if write.tickers:
        pipe.hdel(HELD_PRICES, *write.tickers)  # written prices need no confirmation any more
    for exchange, circuit in write.circuits.items():
        pipe.hset(circuit_key(exchange), mapping=circuit)
    # Field by field: a slot that overlapped this one may have changed other holds meanwhile.
    if write.holds:
        pipe.hset(FAILURE_HOLDS, mapping=write.holds)
    if write.holds_ended:
        pipe.hdel(FAILURE_HOLDS, *write.holds_ended)
    if write.pace:
        pipe.hset(PACE, mapping={exchange: str(at) for exchange, at in write.pace.items()})
        pipe.pexpire(PACE, HEARTBEAT_TTL_MS)  # a pace long past means nothing
    for exchange, figures in write.kept.items():
        if figures:
            pipe.hset(kept_key(exchange), mapping=figures)
            pipe.pexpire(kept_key(exchange), KEPT_TTL_MS)
    for exchange, unusable in write.kept_unusable.items():
        if unusable:
            pipe.hdel(kept_key(exchange), *unusable)
    if write.held:
        pipe.hset(HELD_PRICES, mapping={pair: repr(price) for pair, price in write.held.items()})
    if unlisted:
        pipe.hdel(STALE_COPIES, *unlisted)
        pipe.hdel(LKG_WRITTEN, *unlisted)
    pipe.delete(LISTED_PAIRS, SUSPENDED_PAIRS)
    if write.listed:
        pipe.sadd(LISTED_PAIRS, *write.listed)
    if write.suspended:
        pipe.sadd(SUSPENDED_PAIRS, *write.suspended)
    for name, increment in write.counters.items():
        if increment:
            pipe.hincrby(STATS, name, increment)
    if write.fields:
        pipe.hset(STATS, mapping=write.fields)
    pipe.execute()
