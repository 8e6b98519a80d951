"""The fetcher's metrics: one EMF document per slot, built from what the slot did.

Every running invocation reports its heartbeat and the circuit every slot (paused is not dead);
only the slot's owner reports what was fetched, missing and written.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from fetcher.tick import TickResult
from fetcher.verify import Transition
from market_data.observability import emit_metrics

SERVICE = "fetcher"

# Status changes the fetcher makes, as whitelist metrics: (from, to) -> metric.
TRANSITION_METRICS = {
    ("pending", "active"): "WhitelistVerified",
    ("pending", "rejected"): "WhitelistRejected",
    ("active", "suspended"): "WhitelistSuspended",
    ("suspended", "active"): "WhitelistRestored",
}


@dataclass
class SlotReport:
    """What one slot of one invocation did, filled in as the slot runs."""

    slot: int
    heartbeat_written: bool = False
    outcome: str = "failed"  # ticked, paused, skipped or failed
    circuits_open: int = 0  # exchanges whose circuit breaker is open
    stale_pairs: int | None = None  # active pairs not refreshed; None when not this invocation's slot
    tick: TickResult | None = None
    store_errors: int = 0


def slot_values(report: SlotReport) -> tuple[dict[str, float | list[float]], dict[str, dict[str, float]]]:
    """The slot's metric values and its breakdowns by kind."""
    values: dict[str, float | list[float]] = {
        "Heartbeats": 1 if report.heartbeat_written else 0,
        "Ticks": 1 if report.outcome == "ticked" else 0,
        "TicksPaused": 1 if report.outcome == "paused" else 0,
        "TicksSkippedClaimedElsewhere": 1 if report.outcome == "skipped" else 0,
        "TickFailures": 1 if report.outcome == "failed" else 0,
        "CircuitOpen": report.circuits_open,
    }
    if report.stale_pairs is not None:
        values["PairsMissing"] = report.stale_pairs
    breakdowns: dict[str, dict[str, float]] = {}
    tick = report.tick
    if tick is not None:
        rejected = Counter(reason.split(":", 1)[0] for reason in tick.invalid.values())
        rejected["price_jump"] += len(tick.held)
        errors = Counter(error.kind for error in tick.errors)
        values.update(
            TickDuration=tick.duration_ms,
            PairsFetched=len(tick.tickers),
            PairsOnFallback=sum(
                1 for pair in tick.tickers if pair in tick.routes and not tick.routes[pair].preferred
            ),
            PairsRejected=sum(rejected.values()),
            ExchangeErrors=len(tick.errors),
            ExchangeRequests=tick.requests,
            LastKnownGoodWrites=tick.lkg_written,
        )
        if tick.fetch_ms is not None:
            values["FetchLatency"] = tick.fetch_ms
        if tick.cache_write_ms is not None:
            values["CacheWriteLatency"] = tick.cache_write_ms
        if tick.sync_gaps_ms:
            values["SyncGap"] = [float(gap) for gap in _at_most_99(tick.sync_gaps_ms)]
        if tick.used_weight is not None:
            values["ExchangeWeightUsed"] = tick.used_weight
        transitions = Counter(_transition_metric(t) for t in tick.applied)
        for name in TRANSITION_METRICS.values():  # zeros too: a chart without gaps
            values[name] = transitions[name]
        breakdowns = {
            "ExchangeErrorsByKind": dict(errors),
            "PairsRejectedByReason": {kind: n for kind, n in rejected.items() if n},
            "PairsFetchedByExchange": dict(Counter(ticker.exchange for ticker in tick.tickers.values())),
        }
    values["StoreErrors"] = report.store_errors
    return values, breakdowns


def emit_slot(report: SlotReport, *, invocation_id: str, at_ms: int) -> None:
    values, breakdowns = slot_values(report)
    metadata: dict[str, object] = {
        "slot": report.slot,
        "invocationId": invocation_id,
        "outcome": report.outcome,
    }
    if report.tick is not None and report.tick.errors:
        metadata["errorKinds"] = sorted({error.kind for error in report.tick.errors})
    emit_metrics(SERVICE, values, breakdowns=breakdowns, timestamp_ms=at_ms, metadata=metadata)


def _transition_metric(transition: Transition) -> str | None:
    return TRANSITION_METRICS.get((transition.allowed_from[0], transition.to))


def _at_most_99(gaps: list[int]) -> list[int]:
    """EMF takes at most 100 values per metric: beyond that, an even spread of the sorted gaps
    (with the largest) keeps the percentiles honest in one document."""
    if len(gaps) <= 99:
        return gaps
    ordered = sorted(gaps)
    step = (len(ordered) - 1) / 98
    return [ordered[round(i * step)] for i in range(99)]
