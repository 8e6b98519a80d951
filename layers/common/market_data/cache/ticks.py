"""The fetcher's side of the cache: opening a slot with the state every invocation shares, and
writing what a tick produced."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from market_data.cache.connection import translated
from market_data.cache.keys import (
    FAILURE_HOLDS,
    HEARTBEAT,
    HEARTBEAT_TTL_MS,
    HELD_PRICES,
    KEPT_TTL_MS,
    LISTED_FIELD,
    LKG_WRITTEN,
    META_FIELDS,
    PACE,
    SHARED_HEALTH,
    SLOT_FIELD,
    STALE_COPIES,
    STALE_COPY_TTL_MS,
    STATS,
    SUSPENDED_FIELD,
    WRITTEN_SLOT,
    ban_key,
    circuit_key,
    claim_key,
    kept_key,
)
from market_data.cache.reads import decode_bans, decode_circuits
from market_data.contracts import Ban, CircuitState, Heartbeat, TickStats, WriteTimings

if TYPE_CHECKING:
    from redis import Redis


@dataclass(frozen=True)
class SharedState:
    """What the invocations share from one slot to the next, as a slot found it."""

    bans: dict[str, Ban] = field(default_factory=dict)  # exchange -> its ban, while one lasts
    circuits: dict[str, CircuitState] = field(default_factory=dict)
    holds: dict[str, str] | None = None  # FAILURE_HOLDS's fields; None when the cache is lost
    pace: dict[str, int] = field(default_factory=dict)  # exchange -> no request before (epoch ms)
    kept: dict[str, dict[str, bytes]] = field(default_factory=dict)  # exchange -> kept figures
    lkg_written: dict[str, int] = field(default_factory=dict)  # pair -> ms of its last DynamoDB write
    cached_pairs: frozenset[str] = frozenset()  # pairs that have a stale copy (to drop unlisted ones)
    cold: bool = False  # no tick has written to this cache: new, flushed or failed over


@dataclass(frozen=True)
class SharedStateDiff:
    """What one tick changes in the shared state: only what it decided, field by field, so that a
    slot that overlapped it keeps what it changed meanwhile."""

    circuits: dict[str, CircuitState] = field(default_factory=dict)  # exchanges asked this tick
    holds: dict[str, str] = field(default_factory=dict)  # FAILURE_HOLDS's fields set
    holds_ended: Sequence[str] = ()  # FAILURE_HOLDS's fields removed
    pace: dict[str, int] = field(default_factory=dict)  # exchanges asked this tick
    kept: dict[str, dict[str, bytes]] = field(default_factory=dict)  # exchange -> figures read this tick
    kept_dropped: dict[str, list[str]] = field(default_factory=dict)  # exchange -> figures not to serve


@dataclass(frozen=True)
class SlotStart:
    """What the fetcher learns when it opens a slot."""

    claimed: bool  # this invocation owns the slot's exchange fetch
    shared: SharedState
    cache_ok: bool = True  # False: the cache is unreachable and DynamoDB coordinates this slot


@translated
def open_slot(
    client: Redis, *, slot: int, owner: str, interval_ms: int, heartbeat: Heartbeat, exchanges: Sequence[str]
) -> SlotStart:
    """Write the heartbeat and try to claim the slot (``SET NX PX``), in one round trip, with the
    state the tick needs first: each exchange's ban, circuit and kept figures, holds and pacing.

    The claim outlives the slot by two intervals so an overlapping invocation whose clock lags
    a little still finds it taken.
    """
    pipe = client.pipeline(transaction=False)
    pipe.set(HEARTBEAT, orjson.dumps(heartbeat.as_dict()), px=HEARTBEAT_TTL_MS)
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
    shared = SharedState(
        bans=decode_bans(exchanges, per_exchange[::3]),
        circuits=decode_circuits(exchanges, per_exchange[1::3]),
        holds={key.decode(): value.decode() for key, value in holds.items()},
        pace={key.decode(): int(value) for key, value in pace.items() if value.isdigit()},
        kept={
            exchange: {key.decode(): value for key, value in figures.items()}
            for exchange, figures in zip(exchanges, per_exchange[2::3], strict=True)
            if figures
        },
        lkg_written={key.decode(): int(value) for key, value in written.items()},
        cached_pairs=frozenset(key.decode() for key in cached) - META_FIELDS,
        cold=LISTED_FIELD.encode() not in cached,
    )
    return SlotStart(claimed=bool(claimed), shared=shared)


@translated
def write_heartbeat(client: Redis, heartbeat: Heartbeat) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.set(HEARTBEAT, orjson.dumps(heartbeat.as_dict()), px=HEARTBEAT_TTL_MS)
    pipe.delete(SHARED_HEALTH)  # what health shows has changed
    pipe.execute()


# Replace a ban only with one that ends later, in one step on the server: an invocation whose
# request was already on its way when another's 418 was stored must not shorten it with a 429's
# shorter window.
_LONGER_BAN = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, stored = pcall(cjson.decode, current)
  local ends = ok and type(stored) == 'table' and tonumber(stored['until'])
  if ends and ends >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""


@translated
def set_ban(client: Redis, exchange: str, ban: Ban, *, now_ms: int) -> bool:
    """Remember a ban for every invocation: no call to ``exchange`` before it ends (nor after it).
    A ban is only ever lengthened: False when a longer one is stored already."""
    stored = client.eval(
        _LONGER_BAN, 1, ban_key(exchange), ban.as_json(), ban.until, max(ban.until - now_ms, 1)
    )
    client.delete(SHARED_HEALTH)  # what health shows has changed
    return bool(stored)


@dataclass(frozen=True)
class TickWrite:
    slot: int  # the slot the prices were fetched for: an older one never replaces a newer one's
    tickers: dict[str, bytes]  # pair -> validated ticker JSON
    listed: Sequence[str]
    unlisted_copies: Iterable[str]  # stale copies of pairs no longer listed
    stats: TickStats
    suspended: Sequence[str] = ()  # listed pairs served only from their last copy
    held: dict[str, float] = field(default_factory=dict)  # jumped prices waiting for confirmation
    shared: SharedStateDiff = field(default_factory=SharedStateDiff)


@translated
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


@translated
def record_write_timings(client: Redis, timings: WriteTimings) -> None:
    """Stored just after the tick's write, once it has returned and can be measured."""
    pipe = client.pipeline(transaction=False)
    pipe.hset(STATS, mapping=timings.fields())
    if timings.sync_gap_max_ms is None:
        pipe.hdel(STATS, *WriteTimings.GAP_FIELDS)  # nothing written: no gap to report
    pipe.delete(SHARED_HEALTH)  # what health shows has changed
    pipe.execute()


@translated
def record_lkg_writes(client: Redis, written: dict[str, int]) -> None:
    client.hset(LKG_WRITTEN, mapping={pair: str(at) for pair, at in written.items()})


# The prices and the listed pairs, unless a newer slot has written them already: one server-side
# step, so that no write of a newer slot can land between the check and the write.
_PRICES_UNLESS_NEWER = """
local newest = tonumber(redis.call('GET', KEYS[2]) or '-1')
if newest > tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


@translated
def write_tick(client: Redis, write: TickWrite) -> None:
    """Everything one tick produced, in two round trips (all keys in one cluster slot).

    First the prices with the listed pairs, in one server-side step: a reader never sees half a
    tick, and never an older slot's prices after a newer one's (they are written only if no newer
    slot has been). Then the rest (stats, held prices, shared state) in one MULTI/EXEC. (The
    cluster client runs no script inside a transaction, hence two steps.)
    """
    fields = {
        **write.tickers,
        LISTED_FIELD: orjson.dumps(sorted(write.listed)),
        SUSPENDED_FIELD: orjson.dumps(sorted(write.suspended)),
        SLOT_FIELD: str(write.slot).encode(),
    }
    flat = [item for pair in fields.items() for item in pair]
    client.eval(_PRICES_UNLESS_NEWER, 2, STALE_COPIES, WRITTEN_SLOT, write.slot, STALE_COPY_TTL_MS, *flat)
    pipe = client.pipeline(transaction=True)
    if write.tickers:
        pipe.hdel(HELD_PRICES, *write.tickers)  # written prices need no confirmation any more
    if write.held:
        pipe.hset(HELD_PRICES, mapping={pair: repr(price) for pair, price in write.held.items()})
    unlisted = list(write.unlisted_copies)
    if unlisted:
        pipe.hdel(STALE_COPIES, *unlisted)
        pipe.hdel(LKG_WRITTEN, *unlisted)
    _write_shared(pipe, write.shared)
    for name, increment in write.stats.counters().items():
        pipe.hincrby(STATS, name, increment)
    pipe.hset(STATS, mapping=write.stats.fields())
    pipe.delete(SHARED_HEALTH)  # what health shows has changed
    pipe.execute()


def _write_shared(pipe: object, diff: SharedStateDiff) -> None:
    for exchange, circuit in diff.circuits.items():
        pipe.hset(circuit_key(exchange), mapping=circuit.as_fields())  # type: ignore[attr-defined]
    # Field by field: a slot that overlapped this one may have changed other holds meanwhile.
    if diff.holds:
        pipe.hset(FAILURE_HOLDS, mapping=diff.holds)  # type: ignore[attr-defined]
    if diff.holds_ended:
        pipe.hdel(FAILURE_HOLDS, *diff.holds_ended)  # type: ignore[attr-defined]
    if diff.pace:
        pipe.hset(PACE, mapping={exchange: str(at) for exchange, at in diff.pace.items()})  # type: ignore[attr-defined]
        pipe.pexpire(PACE, HEARTBEAT_TTL_MS)  # type: ignore[attr-defined]  # a pace long past means nothing
    for exchange, figures in diff.kept.items():
        if figures:
            pipe.hset(kept_key(exchange), mapping=figures)  # type: ignore[attr-defined]
            pipe.pexpire(kept_key(exchange), KEPT_TTL_MS)  # type: ignore[attr-defined]
    for exchange, dropped in diff.kept_dropped.items():
        if dropped:
            pipe.hdel(kept_key(exchange), *dropped)  # type: ignore[attr-defined]
