"""Phase: open the slot. Heartbeat, claim and the shared state in one round trip (through DynamoDB
while the cache is lost), then each exchange's pause decided once for the whole slot.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fetcher.deps import Fetcher
from market_data import cache, store
from market_data.contracts import CircuitState, Heartbeat, longest
from market_data.observability import logger


@dataclass(frozen=True)
class Pause:
    """An exchange that may not be asked this slot, until when and why."""

    until: int
    reason: str


@dataclass(frozen=True)
class OpenedSlot:
    slot: int
    started_at: int  # ms, the tick's "now"
    claimed: bool  # this invocation owns the slot's exchange fetch
    cache_ok: bool  # False: the cache is unreachable and DynamoDB coordinates this slot
    shared: cache.SharedState
    pauses: dict[str, Pause]  # exchange -> why it may not be asked this slot
    circuits: dict[str, CircuitState]  # each exchange's breaker as stored when the slot opened
    heartbeat: Heartbeat

    @property
    def all_paused(self) -> bool:
        """Every exchange banned or backing off: nothing to ask this slot."""
        return len(self.pauses) == len(self.circuits)

    def pause(self) -> Pause:
        """The whole slot's pause (``all_paused``): until the first exchange may be asked again."""
        return Pause(
            min(pause.until for pause in self.pauses.values()),
            "; ".join(f"{name}: {pause.reason}" for name, pause in self.pauses.items()),
        )


def open_slot(fetcher: Fetcher, slot: int, invocation_id: str, now: int) -> OpenedSlot:
    deps = fetcher.deps
    heartbeat = Heartbeat(at=now, invocation_id=invocation_id, slot=slot)
    try:
        start = cache.open_slot(
            deps.redis,
            slot=slot,
            owner=invocation_id,
            interval_ms=deps.settings.fetch_interval_ms,
            heartbeat=heartbeat,
            exchanges=list(deps.exchanges),
        )
    except cache.CacheUnavailableError as exc:
        start = _open_without_cache(fetcher, slot, invocation_id, heartbeat, exc)
    if start.cache_ok and start.shared.cold:
        start = _with_durable_bans(fetcher, start, now)
    circuits = {name: stored_circuit(fetcher, name, start) for name in deps.exchanges}
    pauses = {}
    for name in deps.exchanges:
        pause = _exchange_pause(fetcher, name, start, circuits[name], now)
        if pause is not None:
            pauses[name] = pause
    return OpenedSlot(slot, now, start.claimed, start.cache_ok, start.shared, pauses, circuits, heartbeat)


def stored_circuit(fetcher: Fetcher, exchange: str, start: cache.SlotStart) -> CircuitState:
    """The exchange's breaker as every invocation shares it in the cache; this container's copy
    while the cache is lost."""
    if start.cache_ok:
        return start.shared.circuits.get(exchange, CircuitState())
    return fetcher.state.exchanges[exchange].circuit


def _exchange_pause(
    fetcher: Fetcher, exchange: str, start: cache.SlotStart, circuit: CircuitState, now: int
) -> Pause | None:
    """A ban (from the cache, shared by every invocation, or from this container's memory, so a
    failed cache write cannot make us forget it), or its circuit open and not yet due for a probe."""
    ban = longest(start.shared.bans.get(exchange), fetcher.state.exchanges[exchange].ban)
    if ban is not None and ban.lasts(now):
        return Pause(ban.until, ban.describe())
    if not circuit.allows(now):
        wait_s = (circuit.retry_at - now) / 1000
        return Pause(
            circuit.retry_at,
            f"circuit open: {circuit.failures} failed ticks in a row; next probe in {wait_s:.1f} s",
        )
    return None


def write_paused_heartbeat(fetcher: Fetcher, opened: OpenedSlot) -> None:
    """Paused is not dead: the heartbeat says why and until when, and no exchange call is made."""
    pause = opened.pause()
    heartbeat = opened.heartbeat.paused(pause.until, pause.reason)
    if opened.cache_ok:
        cache.write_heartbeat(fetcher.deps.redis, heartbeat)
    else:
        store.put_heartbeat(fetcher.deps.table, heartbeat)


def _with_durable_bans(fetcher: Fetcher, start: cache.SlotStart, now: int) -> cache.SlotStart:
    """A cold cache (new, flushed, failed over) has forgotten every ban: DynamoDB's copies count
    until a tick has written again, and a ban still on goes back into the cache for everyone."""
    deps = fetcher.deps
    try:
        durable = store.get_bans(deps.table, list(deps.exchanges))
    except store.StoreUnavailableError as exc:
        logger.warning("bans not read from DynamoDB for a cold cache", error=exc.cause)
        return start
    bans = dict(start.shared.bans)
    for exchange, ban in durable.items():
        if not ban.lasts(now):
            continue
        bans[exchange] = longest(bans.get(exchange), ban) or ban
        try:
            cache.set_ban(deps.redis, exchange, ban, now_ms=now)
            logger.info("ban restored into a cold cache", exchange=exchange, until=ban.until)
        except cache.CacheUnavailableError:
            pass  # the next slot reads DynamoDB again
    return replace(start, shared=replace(start.shared, bans=bans))


def _open_without_cache(
    fetcher: Fetcher, slot: int, invocation_id: str, heartbeat: Heartbeat, error: cache.CacheUnavailableError
) -> cache.SlotStart:
    """The cache is unreachable: heartbeat, claim and ban go through DynamoDB's conditional writes,
    so fetching goes on once per slot, bans are still honoured, and last known good is still
    written. Every slot tries the cache first again, so recovery needs no restart."""
    logger.warning("cache unreachable; coordinating this slot through DynamoDB", error=error.cause)
    deps = fetcher.deps
    interval = deps.settings.fetch_interval_ms
    store.put_heartbeat(deps.table, heartbeat)
    claimed = store.claim_slot(deps.table, slot, owner=invocation_id, expires_at_ms=(slot + 3) * interval)
    shared = cache.SharedState(
        bans=store.get_bans(deps.table, list(deps.exchanges)), lkg_written=fetcher.state.lkg_written
    )
    return cache.SlotStart(claimed=claimed, shared=shared, cache_ok=False)
