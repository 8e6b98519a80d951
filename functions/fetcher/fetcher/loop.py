"""The invocation loop: tick on wall-clock slots of FETCH_INTERVAL_MS until time runs out.

Slots are ``floor(epoch_ms / interval)``, the same numbers in every invocation, so a claim per
slot (``SET NX``) makes overlapping invocations fetch each slot once between them, and ticks do
not drift the way ``sleep(interval)`` after the work would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from fetcher.metrics import SlotReport, emit_slot
from fetcher.tick import FetcherDeps, exchange_pause, run_tick, stored_circuit
from market_data import cache, store
from market_data.clock import now_ms
from market_data.observability import logger

# Leave this much of the Lambda timeout unused after the last tick (flush logs, return).
DEADLINE_MARGIN_MS = 2_000


@dataclass
class LoopSummary:
    slots: int = 0
    ticks: int = 0
    skipped_claimed_elsewhere: int = 0
    paused: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "slots": self.slots,
            "ticks": self.ticks,
            "skippedClaimedElsewhere": self.skipped_claimed_elsewhere,
            "paused": self.paused,
            "failed": self.failed,
        }


def run_fetcher(
    deps: FetcherDeps,
    *,
    invocation_id: str,
    remaining_ms: Callable[[], int],
    run_seconds: float,
) -> LoopSummary:
    """Tick from the current slot until ``run_seconds`` have passed or the deadline comes near."""
    interval = deps.settings.fetch_interval_ms
    started = now_ms()
    run_until = started + int(run_seconds * 1000)
    summary = LoopSummary()
    slot = started // interval  # the current slot first: a fresh container serves data at once
    while True:
        slot_start = slot * interval
        now = now_ms()
        # A tick must fit in what is left of the invocation, with room to return.
        if (
            slot_start > run_until
            or remaining_ms() - max(slot_start - now, 0) < interval + DEADLINE_MARGIN_MS
        ):
            break
        if slot_start > now:
            time.sleep((slot_start - now) / 1000)
        # No request leaves after the slot ends or when the invocation's time runs short.
        slot_end = time.monotonic() + (slot_start + interval - now_ms()) / 1000
        invocation_end = time.monotonic() + (remaining_ms() - DEADLINE_MARGIN_MS) / 1000
        run_slot(deps, slot, invocation_id, summary, deadline=min(slot_end, invocation_end))
        summary.slots += 1
        slot = max(slot + 1, now_ms() // interval + 1)  # a tick that overran skips, never doubles
    logger.info("fetcher invocation finished", extra=summary.as_dict())
    return summary


def run_slot(
    deps: FetcherDeps, slot: int, invocation_id: str, summary: LoopSummary, *, deadline: float | None = None
) -> None:
    """Heartbeat, claim, then fetch unless another invocation owns the slot or a ban pauses us.

    ``deadline`` (monotonic seconds) bounds the tick's requests; by default one interval from now.
    Whatever happens, the slot ends with one metrics document (see fetcher/metrics.py).
    """
    now = now_ms()
    if deadline is None:
        deadline = time.monotonic() + deps.settings.fetch_interval_ms / 1000
    report = SlotReport(slot)
    store_errors_before = deps.store_errors_total
    try:
        _run_slot(deps, slot, invocation_id, summary, report, now=now, deadline=deadline)
    except Exception:  # one bad tick must never end the invocation: the next slot tries again
        summary.failed += 1
        report.outcome = "failed"
        report.stale_pairs = _active_pairs(deps)
        logger.exception("tick failed", slot=slot)
    report.store_errors = deps.store_errors_total - store_errors_before
    try:
        emit_slot(report, invocation_id=invocation_id, at_ms=now)
    except Exception:  # metrics must never stop fetching
        logger.exception("slot metrics not emitted", slot=slot)


def _run_slot(
    deps: FetcherDeps,
    slot: int,
    invocation_id: str,
    summary: LoopSummary,
    report: SlotReport,
    *,
    now: int,
    deadline: float,
) -> None:
    heartbeat: dict[str, object] = {"at": now, "invocationId": invocation_id, "slot": slot}
    try:
        start = cache.open_slot(
            deps.redis,
            slot=slot,
            owner=invocation_id,
            interval_ms=deps.settings.fetch_interval_ms,
            heartbeat=heartbeat,
            exchanges=list(deps.venues),
        )
    except cache.CACHE_ERRORS as exc:
        start = open_slot_without_cache(deps, slot, invocation_id, heartbeat, exc)
    report.heartbeat_written = True
    pauses = {name: exchange_pause(venue, start, now) for name, venue in deps.venues.items()}
    report.circuits_open = sum(
        1 for venue in deps.venues.values() if not stored_circuit(venue, start).allows(now)
    )
    pause: tuple[int, str] | None = None
    if all(pauses.values()):  # every exchange banned or backing off: nothing to ask this slot
        until = min(p[0] for p in pauses.values() if p)
        reasons = [f"{name}: {p[1]}" for name, p in pauses.items() if p]
        pause = until, "; ".join(reasons)
    if pause is not None:
        # Paused is not dead: the heartbeat says why and until when, and no exchange call is made.
        summary.paused += 1
        report.outcome, report.stale_pairs = "paused", _active_pairs(deps)
        heartbeat.update(pausedUntil=pause[0], pauseReason=pause[1])
        if start.cache_ok:
            cache.write_heartbeat(deps.redis, heartbeat)
        else:
            store.put_heartbeat(deps.table, heartbeat)
        return
    if not start.claimed:
        summary.skipped_claimed_elsewhere += 1
        report.outcome = "skipped"
        return
    report.stale_pairs = _active_pairs(deps)  # until the tick says otherwise
    result = run_tick(deps, start, now, deadline=deadline)
    summary.ticks += 1
    report.outcome, report.tick, report.stale_pairs = "ticked", result, result.stale_pairs
    report.circuits_open = sum(1 for venue in deps.venues.values() if not venue.circuit.allows(now_ms()))
    logger.debug(
        "tick",
        slot=slot,
        pairs=len(result.tickers),
        missing=len(result.missing),
        requests=result.requests,
        errors=[error.kind for error in result.errors],
    )


def _active_pairs(deps: FetcherDeps) -> int | None:
    """Active pairs as last read from the registry: all of them go stale in a slot not fetched."""
    if deps.registry is None:
        return None
    return sum(1 for record in deps.registry if record.status == "active")


def open_slot_without_cache(
    deps: FetcherDeps, slot: int, invocation_id: str, heartbeat: dict[str, object], error: Exception
) -> cache.SlotStart:
    """The cache is unreachable: heartbeat, claim and ban go through DynamoDB's conditional writes,
    so fetching goes on once per slot, bans are still honoured, and last known good is still
    written. Every slot tries the cache first again, so recovery needs no restart."""
    logger.warning("cache unreachable; coordinating this slot through DynamoDB", error=type(error).__name__)
    interval = deps.settings.fetch_interval_ms
    store.put_heartbeat(deps.table, {**heartbeat, "cacheUnreachable": True})
    return cache.SlotStart(
        claimed=store.claim_slot(deps.table, slot, owner=invocation_id, expires_at_ms=(slot + 3) * interval),
        bans=store.get_bans(deps.table, list(deps.venues)),
        cached_pairs=frozenset(),
        lkg_written=deps.lkg_written,
        cache_ok=False,
    )
