"""The invocation loop: tick on wall-clock slots of FETCH_INTERVAL_MS until time runs out.

Slots are ``floor(epoch_ms / interval)``, the same numbers in every invocation, so a claim per
slot (``SET NX``) makes overlapping invocations fetch each slot once between them, and ticks do
not drift the way ``sleep(interval)`` after the work would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from fetcher.deps import Fetcher
from fetcher.reporting import SlotReport, emit_slot
from fetcher.slot import open_slot, write_paused_heartbeat
from fetcher.tick import WrittenTick, notify_consumers, run_tick
from market_data.clock import now_ms
from market_data.observability import logger
from market_data.statuses import ACTIVE

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
    fetcher: Fetcher,
    *,
    invocation_id: str,
    remaining_ms: Callable[[], int],
    run_seconds: float,
) -> LoopSummary:
    """Tick from the current slot until ``run_seconds`` have passed or the deadline comes near."""
    interval = fetcher.deps.settings.fetch_interval_ms
    started = now_ms()
    summary = LoopSummary()
    slot = first_slot(started, interval)
    run_until = max(started + int(run_seconds * 1000), slot * interval)
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
            if remaining_ms() < DEADLINE_MARGIN_MS:
                break  # the invocation was cut short while waiting (the local stack stopping)
        # No request leaves after the slot ends or when the invocation's time runs short.
        slot_end = time.monotonic() + (slot_start + interval - now_ms()) / 1000
        invocation_end = time.monotonic() + (remaining_ms() - DEADLINE_MARGIN_MS) / 1000
        run_slot(fetcher, slot, invocation_id, summary, deadline=min(slot_end, invocation_end))
        summary.slots += 1
        slot = max(slot + 1, now_ms() // interval + 1)  # a tick that overran skips, never doubles
    logger.info("fetcher invocation finished", extra=summary.as_dict())
    return summary


def first_slot(now: int, interval: int) -> int:
    """The current slot, so a fresh container serves data at once, unless less than a quarter of
    it is left: a cold container's first tick reads the exchanges' listings before its tickers,
    and in the last moments of a slot that read would leave the fetch no time, a claimed slot
    with nothing served. Waiting for the next boundary costs under a quarter of a slot."""
    current = now // interval
    return current if (current + 1) * interval - now >= interval // 4 else current + 1


def run_slot(
    fetcher: Fetcher, slot: int, invocation_id: str, summary: LoopSummary, *, deadline: float | None = None
) -> None:
    """Heartbeat, claim, then fetch unless another invocation owns the slot or a ban pauses us.

    ``deadline`` (monotonic seconds) bounds the tick's requests; by default one interval from now.
    Whatever happens, the slot ends with one metrics document (see fetcher/reporting.py).
    """
    now = now_ms()
    if deadline is None:
        deadline = time.monotonic() + fetcher.deps.settings.fetch_interval_ms / 1000
    report = SlotReport(slot)
    store_errors_before = fetcher.state.store_errors_total
    try:
        _run_slot(fetcher, slot, invocation_id, summary, report, now=now, deadline=deadline)
    except Exception:  # one bad tick must never end the invocation: the next slot tries again
        summary.failed += 1
        report.outcome = "failed"
        report.stale_pairs = _active_pairs(fetcher)
        logger.exception("tick failed", slot=slot)
    report.store_errors = fetcher.state.store_errors_total - store_errors_before
    try:
        emit_slot(report, invocation_id=invocation_id, at_ms=now)
    except Exception:  # metrics must never stop fetching
        logger.exception("slot metrics not emitted", slot=slot)


def _run_slot(
    fetcher: Fetcher,
    slot: int,
    invocation_id: str,
    summary: LoopSummary,
    report: SlotReport,
    *,
    now: int,
    deadline: float,
) -> None:
    opened = open_slot(fetcher, slot, invocation_id, now)
    report.heartbeat_written = True
    report.circuits_open = sum(1 for circuit in opened.circuits.values() if not circuit.allows(now))
    if opened.all_paused:
        summary.paused += 1
        report.outcome, report.stale_pairs = "paused", _active_pairs(fetcher)
        write_paused_heartbeat(fetcher, opened)
        notify_consumers(
            fetcher, WrittenTick(slot, {}, [], {}, opened.cache_ok, paused=opened.pause().reason)
        )
        return
    if not opened.claimed:
        summary.skipped_claimed_elsewhere += 1
        report.outcome = "skipped"
        return
    report.stale_pairs = _active_pairs(fetcher)  # until the tick says otherwise
    result = run_tick(fetcher, opened, deadline=deadline)
    summary.ticks += 1
    report.outcome, report.tick, report.stale_pairs = "ticked", result, result.judged.stale_pairs
    after = now_ms()
    report.circuits_open = sum(
        1 for memory in fetcher.state.exchanges.values() if not memory.circuit.allows(after)
    )
    logger.debug(
        "tick",
        slot=slot,
        pairs=len(result.tickers),
        missing=len(result.missing),
        requests=result.requests,
        errors=[error.kind for error in result.errors],
    )


def _active_pairs(fetcher: Fetcher) -> int | None:
    """Active pairs as last read from the registry: all of them go stale in a slot not fetched."""
    if fetcher.state.registry is None:
        return None
    return sum(1 for record in fetcher.state.registry if record.status == ACTIVE)
