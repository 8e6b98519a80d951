"""Phase: report. The tick's stats for health (written with the tick), and one EMF metrics document
per slot, built from what the slot did.

Every running invocation reports its heartbeat and the circuit every slot (paused is not dead);
only the slot's owner reports what was fetched, missing and written.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fetcher.exchanges.base import Exchange, FetchResult, Limits
from fetcher.judging import Judged
from fetcher.listings import Listing
from fetcher.routing import Route
from fetcher.verify import Transition
from market_data.contracts import ExchangeFigures, TickStats
from market_data.observability import emit_metrics
from market_data.statuses import ACTIVE

if TYPE_CHECKING:
    from fetcher.tick import TickResult

SERVICE = "fetcher"

# Status changes the fetcher makes, as whitelist metrics: (from, to) -> metric.
TRANSITION_METRICS = {
    ("pending", "active"): "WhitelistVerified",
    ("pending", "rejected"): "WhitelistRejected",
    ("active", "suspended"): "WhitelistSuspended",
    ("suspended", "active"): "WhitelistRestored",
}


def tick_stats(
    *,
    outcomes: Mapping[str, FetchResult],
    limits: Mapping[str, Limits],
    listings: Mapping[str, Listing],
    routes: Mapping[str, Route],
    judged: Judged,
    fetch_ms: int | None,
    duration_ms: int,
    finished_at: int,
    store_errors: int,
    watching: str = "",
) -> TickStats:
    """What health shows of this tick: counters by kind, each exchange's part, where pairs come from."""
    errors = [error for outcome in outcomes.values() for error in outcome.errors]
    figures = {}
    advice = []
    for name, outcome in outcomes.items():
        figures[name] = ExchangeFigures(
            pairs=sorted(outcome.tickers),
            requests=outcome.requests,
            fetch_ms=outcome.fetch_ms,
            used_weight=limits[name].used_weight,
            errors=len(outcome.errors),
            last_error=f"{outcome.errors[-1].kind}: {outcome.errors[-1]}"[:500] if outcome.errors else None,
        )
        refusal = (
            next((e for e in outcome.errors if e.kind == "restricted_location"), None)
            or listings[name].refused
        )
        if refusal is not None:
            # Advice for operators stays in health while the cause lasts, and goes with it.
            advice.append(refusal.advice or f"{name} refuses requests from this location (HTTP 451)")
    unreachable = {name: listing.unreachable for name, listing in listings.items()}
    if unreachable and all(unreachable.values()):
        advice.insert(0, unreachable_advice(unreachable))
    weights = [limits[name].used_weight for name, outcome in outcomes.items() if outcome.requests]
    reported = [weight for weight in weights if weight is not None]
    return TickStats(
        successes=1 if judged.tickers or not errors else 0,  # a tick that served prices succeeded
        errors=1 if errors else 0,
        invalid_tickers=len(judged.invalid),
        price_jumps_held=len(judged.held),
        errors_by_kind={**Counter(error.kind for error in errors), "dynamodb": store_errors},
        invalid_by_kind=dict(Counter(reason.split(":", 1)[0] for reason in judged.invalid.values())),
        duration_ms=duration_ms,
        missing=judged.missing,
        pairs_by_status=judged.pairs_by_status,
        pair_sources={
            pair: {"exchange": route.exchange, "symbol": route.symbol, "preferred": route.preferred}
            for pair, route in sorted(routes.items())
            if judged.status.get(pair) == ACTIVE
        },
        exchanges=figures,
        advice="; ".join(advice),
        listing_watch=watching,
        last_fetch_time=finished_at if judged.tickers else None,
        sync_latency_ms=fetch_ms,
        used_weight=max(reported) if reported else None,
        last_error=f"{errors[-1].kind}: {errors[-1]}"[:500] if errors else None,
    )


def unreachable_advice(causes: Mapping[str, str | None]) -> str:
    """Every exchange failed before a connection was made: the network is the cause, not the
    exchanges, and no listing can be read until it is fixed."""
    each = "; ".join(f"{name}: {cause}" for name, cause in causes.items())
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):  # set by Lambda itself, never by the local stack
        fix = "check the private subnets' route to the internet (the NAT gateway) and their DNS"
    else:
        fix = "check this machine's network, or run `make demo` for the offline simulators"
    return f"no exchange could be reached: {each}; {fix}"


def exchange_limits(exchanges: Mapping[str, Exchange], now: int) -> dict[str, Limits]:
    return {name: exchange.limits(now) for name, exchange in exchanges.items()}


@dataclass(frozen=True)
class TickWeight:
    """The request weight of one tick on an exchange that counts weight (Binance)."""

    spent: int  # what this tick's own requests cost
    used: int  # the exchange's count for the address this minute: every client behind it
    limit: int  # the exchange's limit per minute


def tick_weights(
    before: Mapping[str, Limits], after: Mapping[str, Limits], asked: Iterable[str]
) -> dict[str, TickWeight]:
    """Each asked exchange's weight: the tick's own (what its requests cost, from the running
    total across the tick) beside the exchange's count for the minute."""
    weights = {}
    for name in asked:
        budget, earlier = after[name].weight, before[name].weight
        if budget is None:
            continue
        spent = budget.spent - (earlier.spent if earlier is not None else 0)
        weights[name] = TickWeight(spent, budget.used, budget.limit)
    return weights


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
        judged = tick.judged
        rejected = Counter(reason.split(":", 1)[0] for reason in judged.invalid.values())
        rejected["price_jump"] += len(judged.held)
        errors = tick.errors
        routes = tick.plan.routes
        values.update(
            TickDuration=tick.duration_ms,
            PairsFetched=len(judged.tickers),
            PairsOnFallback=sum(
                1 for pair in judged.tickers if pair in routes and not routes[pair].preferred
            ),
            PairsRejected=sum(rejected.values()),
            ExchangeErrors=len(errors),
            ExchangeRequests=tick.requests,
            LastKnownGoodWrites=tick.lkg_written,
        )
        if tick.fetch_ms is not None:
            values["FetchLatency"] = tick.fetch_ms
        if tick.cache is not None:
            values["CacheWriteLatency"] = tick.cache.cache_write_ms
            if tick.cache.sync_gaps_ms:
                values["SyncGap"] = [float(gap) for gap in _at_most_99(tick.cache.sync_gaps_ms)]
        if tick.stats.used_weight is not None:
            values["ExchangeWeightUsed"] = tick.stats.used_weight
        if tick.weights:
            values["ExchangeWeightSpent"] = sum(weight.spent for weight in tick.weights.values())
        transitions = Counter(_transition_metric(t) for t in tick.applied)
        for name in TRANSITION_METRICS.values():  # zeros too: a chart without gaps
            values[name] = transitions[name]
        breakdowns = {
            "ExchangeErrorsByKind": dict(Counter(error.kind for error in errors)),
            "PairsRejectedByReason": {kind: n for kind, n in rejected.items() if n},
            "PairsFetchedByExchange": dict(Counter(ticker.exchange for ticker in judged.tickers.values())),
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
    if report.tick is not None and report.tick.weights:
        # Each exchange's figures apart: the metrics carry only the sum and the highest count.
        metadata["exchangeWeight"] = {
            name: {"tick": weight.spent, "usedThisMinute": weight.used, "limit": weight.limit}
            for name, weight in report.tick.weights.items()
        }
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
