"""The API functions' side of the cache: price reads, the read figures, and health's record."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import orjson

from market_data.cache.connection import translated
from market_data.cache.keys import (
    HEARTBEAT,
    LISTED_FIELD,
    READ_LATENCY_SAMPLES_KEPT,
    READS_WINDOW_MS,
    READS_WINDOW_TTL_MS,
    SHARED_HEALTH,
    SLOT_FIELD,
    STALE_COPIES,
    STATS,
    SUSPENDED_FIELD,
    ban_key,
    circuit_key,
    read_latency_key,
    reads_key,
)
from market_data.contracts import Ban, CircuitState, FetcherStats, Heartbeat, ReadCounts

if TYPE_CHECKING:
    from redis import Redis


@dataclass(frozen=True)
class CachedPrices:
    """What one read returned: listed pairs and, per listed pair, the newest ticker JSON."""

    populated: bool  # False: the cache holds no listed set (cold, flushed or failed over)
    listed: frozenset[str]
    tickers: dict[str, bytes]
    suspended: frozenset[str] = frozenset()  # served from their last copy, always flagged stale
    slot: int | None = None  # of the tick that wrote last: its prices stand until the next slot's


@lru_cache(maxsize=8)
def _pair_set(raw: bytes) -> frozenset[str]:
    """The listed or suspended pairs from their JSON list, decoded once per change: every read
    carries them, and they change only when the registry does."""
    return frozenset(orjson.loads(raw))


@translated
def read_prices(client: Redis, pairs: Sequence[str] | None) -> CachedPrices:
    """One command: which pairs are listed or suspended, and their newest tickers.

    The listed and suspended pairs ride in the stale-copy hash, written in the same transaction
    as the tickers, so a request costs what a plain HMGET does and never sees half a tick.
    """
    if pairs is None:
        everything: dict[bytes, bytes] = client.hgetall(STALE_COPIES)  # type: ignore[assignment]  # sync client
        found = {key.decode(): value for key, value in everything.items()}
        raw_listed, raw_suspended = found.pop(LISTED_FIELD, None), found.pop(SUSPENDED_FIELD, None)
        raw_slot = found.pop(SLOT_FIELD, None)
        listed = _pair_set(raw_listed) if raw_listed else frozenset()
        tickers = {pair: value for pair, value in found.items() if pair in listed}
    else:
        answer: list[bytes | None] = client.hmget(  # type: ignore[assignment]  # sync client
            STALE_COPIES, [*pairs, LISTED_FIELD, SUSPENDED_FIELD, SLOT_FIELD]
        )
        *copies, raw_listed, raw_suspended, raw_slot = answer
        listed_all = _pair_set(raw_listed) if raw_listed else frozenset()
        listed = frozenset(pair for pair in pairs if pair in listed_all)
        tickers = {
            pair: value
            for pair, value in zip(pairs, copies, strict=True)
            if value is not None and pair in listed
        }
    suspended = _pair_set(raw_suspended) if raw_suspended else frozenset()
    slot = int(raw_slot) if raw_slot is not None else None
    return CachedPrices(raw_listed is not None, listed, tickers, suspended, slot)


@translated
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


@translated
def read_shared_health(client: Redis, slot: int) -> bytes | None:
    """Health as another request computed it for ``slot``, if one has since the fetcher's last write."""
    found: bytes | None = client.get(SHARED_HEALTH)  # type: ignore[assignment]  # sync client
    prefix = f"{slot}|".encode()
    return found[len(prefix) :] if found is not None and found.startswith(prefix) else None


@translated
def share_health(client: Redis, slot: int, body: bytes, *, ttl_ms: int) -> None:
    """Keep ``body`` as ``slot``'s health for every container."""
    client.set(SHARED_HEALTH, f"{slot}|".encode() + body, px=ttl_ms)


@dataclass(frozen=True)
class FetcherRecord:
    """What health reads: the fetcher's stats and heartbeat, each exchange's ban and circuit, the
    listed pairs, and the prices function's read figures of this and the last minute."""

    stats: FetcherStats
    heartbeat: Heartbeat | None
    bans: dict[str, Ban]  # exchange -> its ban, while one lasts
    listed: frozenset[str]
    circuits: dict[str, CircuitState] = field(default_factory=dict)
    read_counts: ReadCounts = field(default_factory=ReadCounts)
    read_latencies_us: list[int] = field(default_factory=list)


@translated
def read_fetcher_record(client: Redis, *, now_ms: int, exchanges: Sequence[str]) -> FetcherRecord:
    """Everything health shows, in one round trip."""
    window = now_ms // READS_WINDOW_MS
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(STATS)
    pipe.get(HEARTBEAT)
    pipe.hget(STALE_COPIES, LISTED_FIELD)
    for exchange in exchanges:
        pipe.get(ban_key(exchange))
        pipe.hgetall(circuit_key(exchange))
    for minute in (window - 1, window):
        pipe.hgetall(reads_key(minute))
        pipe.lrange(read_latency_key(minute), 0, -1)
    stats, heartbeat, listed, *rest = pipe.execute()
    per_exchange, windows = rest[: 2 * len(exchanges)], rest[2 * len(exchanges) :]
    read_counts: dict[str, int] = {}
    latencies: list[int] = []
    for counts, samples in zip(windows[::2], windows[1::2], strict=True):
        for key, value in counts.items():
            read_counts[key.decode()] = read_counts.get(key.decode(), 0) + int(value)
        latencies.extend(int(sample) for sample in samples)
    return FetcherRecord(
        stats=FetcherStats.decode({key.decode(): value.decode() for key, value in stats.items()}),
        heartbeat=Heartbeat.from_mapping(orjson.loads(heartbeat)) if heartbeat else None,
        bans=decode_bans(exchanges, per_exchange[::2]),
        listed=_pair_set(listed) if listed else frozenset(),
        circuits=decode_circuits(exchanges, per_exchange[1::2]),
        read_counts=ReadCounts.decode(read_counts),
        read_latencies_us=latencies,
    )


def decode_bans(exchanges: Sequence[str], raws: Sequence[bytes | None]) -> dict[str, Ban]:
    return {exchange: Ban.from_json(raw) for exchange, raw in zip(exchanges, raws, strict=True) if raw}


def decode_circuits(exchanges: Sequence[str], raws: Sequence[dict[bytes, bytes]]) -> dict[str, CircuitState]:
    return {
        exchange: CircuitState.from_fields({key.decode(): value.decode() for key, value in fields.items()})
        for exchange, fields in zip(exchanges, raws, strict=True)
        if fields
    }
