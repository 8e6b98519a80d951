"""One tick, as named phases: the body of a slot this invocation claimed.

    open the slot (slot.py, by the loop) -> load the shared state (shared_state.py) -> read the
    pairs (pairs.py) and the listings due (listings.py) -> route (routing.py, pure) -> fetch
    (fetching.py) -> judge (judging.py: verify.py, jumps.py) -> persist (persisting.py) ->
    consumers -> report (reporting.py)

Each phase is a plain function over the container's collaborators and memory (``Fetcher``), so
tests drive it with a real redis-server, moto and the exchange simulators.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from fetcher.deps import Fetcher
from fetcher.exchanges.base import ExchangeError, FetchResult
from fetcher.fetching import fetch_routed
from fetcher.judging import Fetched, Judged, judge, verdicts
from fetcher.listings import read_due_listings, watch_listings
from fetcher.pairs import read_pairs
from fetcher.persisting import (
    CacheWritten,
    apply_transitions,
    settle_exchanges,
    write_cache,
    write_last_known_good,
)
from fetcher.reporting import TickWeight, exchange_limits, tick_stats, tick_weights
from fetcher.routing import RoutePlan, plan_routes
from fetcher.shared_state import load_shared_state, shared_state_diff
from fetcher.slot import OpenedSlot
from fetcher.verify import Transition
from market_data.clock import now_ms
from market_data.contracts import TickStats
from market_data.models import Ticker
from market_data.observability import logger
from market_data.statuses import ACTIVE, SUSPENDED

# Why a pair has no source while no exchange's listing has been read: the exchanges' errors (and
# health's advice, when none could be reached) say why.
NO_LISTING_READ = "no exchange's listing could be read yet, so no exchange is known to list it"


@dataclass(frozen=True)
class WrittenTick:
    """What a tick wrote, as its consumers see it (after the cache write and last known good)."""

    slot: int
    tickers: dict[str, Ticker]  # the prices written this tick
    listed: list[str]  # every pair served, the suspended ones included
    missing: dict[str, str]  # listed pair -> why it has no new price this tick
    cache_written: bool  # False: the cache write failed (readers see the previous tick)
    failed_over: dict[str, str] = field(default_factory=dict)  # pair -> the later exchange serving it
    paused: str = ""  # a paused slot (nothing fetched): why; its consumers are told too
    activated: tuple[str, ...] = ()  # pairs made active this tick (verified, or restored)


@dataclass(frozen=True)
class TickResult:
    plan: RoutePlan
    exchanges: dict[str, FetchResult]  # each exchange's part
    judged: Judged
    applied: list[Transition]  # status changes stored this tick
    stats: TickStats
    fetch_ms: int | None  # the exchange phase; None when no ticker request was made
    duration_ms: int
    cache: CacheWritten | None  # None when the cache write did not happen or failed
    lkg_written: int
    weights: dict[str, TickWeight] = field(default_factory=dict)  # exchanges that count weight

    @property
    def tickers(self) -> dict[str, Ticker]:
        return self.judged.tickers

    @property
    def missing(self) -> dict[str, str]:
        return self.judged.missing

    @property
    def errors(self) -> list[ExchangeError]:
        return [error for outcome in self.exchanges.values() for error in outcome.errors]

    @property
    def requests(self) -> int:
        return sum(outcome.requests for outcome in self.exchanges.values())


def run_tick(fetcher: Fetcher, opened: OpenedSlot, *, deadline: float) -> TickResult:
    """Fetch every listed pair once and write the results."""
    deps, state, started_at = fetcher.deps, fetcher.state, opened.started_at
    limits_before = exchange_limits(deps.exchanges, started_at)  # the tick's own weight starts here
    dropped = load_shared_state(fetcher, opened)
    pairs = read_pairs(fetcher, started_at)
    outcomes = {name: FetchResult(name) for name in deps.exchanges}
    unavailable = {name: pause.reason for name, pause in opened.pauses.items()}
    # Verdicts need listings read after the submission (an older copy may predate a listing or a
    # halt): one read per exchange for all pending pairs of the tick, once per submission, and the
    # submission caps bound how often that can be.
    watch_listings(fetcher, pairs.suspended)
    read = read_due_listings(fetcher, outcomes, unavailable, started_at, needed_after=pairs.newest_pending)
    for name, outcome in outcomes.items():
        if outcome.rate_limited is not None:
            unavailable[name] = "rate limited"  # a ban must never be followed by a ticker call
    listings = {name: memory.listing for name, memory in state.exchanges.items()}

    # Pending pairs that trade are fetched with the others: their ticker is the liquidity check,
    # so verification costs no request of its own.
    candidates = [
        p.pair for p in pairs.pending if any(listing.trading(p.pair) for listing in listings.values())
    ]
    plan = plan_routes(
        pairs.active + candidates,
        list(deps.exchanges),
        {name: listing.routable() for name, listing in listings.items()},
        exchange_limits(deps.exchanges, started_at),
        unavailable=unavailable,
        holds=state.holds,
        now_ms=started_at,
        budget_now_ms=now_ms(),  # the weight a listing read just reported counts in this minute
    )
    if plan.unserved and all(listing.by_pair is None for listing in listings.values()):
        # Nothing can be concluded about where a pair is listed: say so, not "not listed".
        plan = replace(plan, unserved=dict.fromkeys(plan.unserved, NO_LISTING_READ))
    fetch_ms = fetch_routed(fetcher, plan.routes, outcomes, deadline=deadline)
    fetched = Fetched.combine(outcomes, plan.unserved)

    transitions = verdicts(
        fetcher, pairs, list(listings.values()), fetched, listings_read=bool(read), now=started_at
    )
    applied = apply_transitions(fetcher, transitions, started_at)
    judged = judge(fetcher, pairs, applied, fetched, cache_ok=opened.cache_ok)

    # After this tick's changes: a pair suspended now has the listings watched from the next tick.
    watching = watch_listings(fetcher, [pair for pair in judged.listed if judged.status[pair] == SUSPENDED])
    finished_at = now_ms()
    circuits = settle_exchanges(fetcher, opened, outcomes, plan.weight_pauses, finished_at)
    limits = exchange_limits(deps.exchanges, finished_at)
    asked = {name for name, outcome in outcomes.items() if outcome.requests}
    stats = tick_stats(
        outcomes=outcomes,
        limits=limits,
        listings=listings,
        routes=plan.routes,
        judged=judged,
        fetch_ms=fetch_ms,
        duration_ms=finished_at - started_at,
        finished_at=finished_at,
        store_errors=state.store_errors,
        watching=watching,
    )
    # The cache first (freshness is what readers wait for), then the durable copy, which must
    # not depend on the cache write succeeding: it is what readers need when the cache fails.
    written = None
    if opened.cache_ok:
        shared = shared_state_diff(fetcher, opened, asked=asked, circuits=circuits, dropped=dropped)
        written = write_cache(fetcher, opened, judged, stats, shared)
    lkg_written = write_last_known_good(fetcher, judged.tickers, opened.shared.lkg_written, finished_at)
    failed_over = {
        pair: str(source["exchange"])
        for pair, source in stats.pair_sources.items()
        if not source["preferred"]
    }
    notify_consumers(
        fetcher,
        WrittenTick(
            opened.slot,
            dict(judged.tickers),
            judged.listed,
            judged.missing,
            written is not None,
            failed_over,
            activated=tuple(t.pair for t in applied if t.to == ACTIVE),
        ),
    )
    return TickResult(
        plan,
        outcomes,
        judged,
        applied,
        stats,
        fetch_ms,
        finished_at - started_at,
        written,
        lkg_written,
        tick_weights(limits_before, limits, asked),
    )


def notify_consumers(fetcher: Fetcher, written: WrittenTick) -> None:
    """Hand the written tick to each consumer; one consumer's failure costs nothing else."""
    for consumer in fetcher.deps.consumers:
        try:
            consumer(written)
        except Exception:
            logger.exception("tick consumer failed", consumer=getattr(consumer, "__name__", repr(consumer)))
