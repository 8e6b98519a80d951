"""One tick: resolve the listed pairs, fetch their tickers in weight-aware batches, validate, write.

Plain functions over explicit collaborators (``FetcherDeps``), so tests drive them with a real
redis-server, moto and the exchange simulator.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from fetcher.binance import RESTRICTED_LOCATION_ADVICE, WEIGHT_WINDOW_MS
from fetcher.circuit import Circuit
from fetcher.exchange import ExchangeError, RateLimitedError, SymbolInfo
from fetcher.jumps import judge_jumps
from fetcher.routing import FailureHolds, Route, route_pairs
from fetcher.sources import ExchangeSource, SourceResult, merge_kept, share_kept
from fetcher.verify import ListingView, Transition, decide_pending, pending_since, recheck_listed
from market_data import cache, store
from market_data.clock import now_ms
from market_data.models import PairRecord, Ticker
from market_data.observability import logger

if TYPE_CHECKING:
    from redis import Redis

    from market_data.config import Settings


@dataclass
class ListingDirectory:
    """One exchange's listing (pair -> its own name and status), kept per container and re-read
    every ``refresh_ms``, sooner when a name it gave was refused (the listing changed under us).

    Names the exchange refused are left out until the next regular read, so one stale name costs
    one bisection, not one per tick.
    """

    refresh_ms: int
    by_pair: dict[str, SymbolInfo] | None = None
    read_at: int = 0  # when the listing last came back
    attempted_at: int = 0  # when it was last asked for
    next_read_at: int = 0
    conclusive: bool = True  # False while refreshes fail and the last copy stands in
    refused: str | None = None  # HTTP 451: the exchange serves nothing to this location
    rejected: dict[str, int] = field(default_factory=dict)  # symbol -> when it was refused

    def due(self, now: int, *, needed_after: int = 0) -> bool:
        """``needed_after``: a listing read before then cannot judge a pair submitted since."""
        return self.by_pair is None or now >= self.next_read_at or self.attempted_at < needed_after

    def servable(self, status: str) -> dict[str, SymbolInfo] | None:
        if self.by_pair is None:
            return None
        return {
            pair: info
            for pair, info in self.by_pair.items()
            if info.status == status and info.symbol not in self.rejected
        }

    def read(self, source: ExchangeSource, now: int) -> None:
        """Read the listing; raises RateLimitedError (a ban must pause the exchange) and, when no
        copy is kept, ExchangeError. A failed refresh keeps the last copy until the next regular read."""
        regular = now - self.read_at >= self.refresh_ms  # not a re-read after a refused name
        self.attempted_at = now
        try:
            by_pair = source.listing()
        except RateLimitedError:
            raise
        except ExchangeError as exc:
            self.next_read_at = now + self.refresh_ms
            if exc.kind == "restricted_location":
                # The exchange refuses this location: it lists nothing it would serve us.
                self.by_pair, self.refused, self.conclusive, self.read_at = {}, str(exc), True, now
                raise
            self.conclusive = False
            if self.by_pair is None:
                raise
            logger.warning("listing refresh failed; using the previous one", exchange=source.name)
            raise
        if regular:
            self.rejected.clear()
        # When the listing was actually read (not when the tick began): a submission made while
        # this tick started is then judged on this read, not one tick later.
        self.by_pair, self.refused, self.conclusive = by_pair, None, True
        self.read_at = now_ms()
        self.next_read_at = now + self.refresh_ms

    def reject(self, symbol: str, now: int) -> None:
        self.rejected[symbol] = now
        self.next_read_at = 0  # the listing changed under us: read it again next tick

    def view(self, exchange: str, servable_status: str) -> ListingView:
        return ListingView(
            exchange, self.by_pair, servable_status, self.read_at, self.conclusive, self.refused
        )


@dataclass
class Venue:
    """One configured exchange as this container knows it: how to reach it, its listing, and
    its ban and circuit as last seen (the cache holds the shared copies)."""

    source: ExchangeSource
    directory: ListingDirectory
    ban: dict[str, Any] | None = None
    circuit: Circuit = field(default_factory=Circuit)

    @property
    def name(self) -> str:
        return self.source.name


@dataclass
class FetcherDeps:
    """Everything a tick needs, created once per container (see handler.py)."""

    settings: Settings
    redis: Redis
    table: Any
    venues: dict[str, Venue]  # in EXCHANGES order: the first that lists a pair serves it
    executor: ThreadPoolExecutor  # one thread per exchange: they are asked side by side
    holds: FailureHolds = field(default_factory=FailureHolds)  # pairs held off a failing exchange
    # The holds as the cache had them when read, and changes a failed cache write did not store.
    holds_stored: dict[str, str] = field(default_factory=dict)
    holds_unsaved: tuple[dict[str, str], list[str]] | None = None
    registry: list[PairRecord] | None = None  # the last registry read, used while DynamoDB fails
    lkg_written: dict[str, int] = field(default_factory=dict)  # used while the cache is lost
    store_errors: int = 0  # DynamoDB failures not yet counted in the stats
    store_errors_total: int = 0  # DynamoDB failures since the container started (for metrics)
    rng: random.Random = field(default_factory=random.Random)  # backoff jitter
    closers: list[Callable[[], None]] = field(default_factory=list)  # what close() releases

    def count_store_error(self) -> None:
        self.store_errors += 1
        self.store_errors_total += 1

    def close(self) -> None:
        """Release the pools and kept-alive connections (a container never needs to; tests and
        benchmarks that build many do)."""
        self.executor.shutdown()
        for close in self.closers:
            close()


@dataclass
class TickResult:
    tickers: dict[str, Ticker] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # pair -> why it is not served this tick
    invalid: dict[str, str] = field(default_factory=dict)  # pair -> why its ticker was dropped
    errors: list[ExchangeError] = field(default_factory=list)
    requests: int = 0
    routes: dict[str, Route] = field(default_factory=dict)  # pair -> the exchange asked for it
    exchanges: dict[str, SourceResult] = field(default_factory=dict)  # each exchange's part
    paused: dict[str, dict[str, Any]] = field(default_factory=dict)  # exchange -> a pause of our own
    held: dict[str, float] = field(default_factory=dict)  # jumped prices not written this tick
    lkg_written: int = 0
    applied: list[Transition] = field(default_factory=list)  # status changes stored this tick
    pairs_by_status: dict[str, int] = field(default_factory=dict)
    stale_pairs: int = 0  # active pairs whose price this tick did not refresh
    fetch_ms: int | None = None  # the exchange phase; None when no ticker request was made
    duration_ms: int = 0
    cache_write_ms: int | None = None  # None when the cache write did not happen or failed
    sync_gaps_ms: list[int] = field(default_factory=list)  # per written pair: ticker time -> visible
    used_weight: int | None = None  # the highest X-MBX-USED-WEIGHT-1M an exchange reported this tick


def read_registry(deps: FetcherDeps, now: int) -> list[PairRecord]:
    """Every pair of the registry with its status; an empty registry is seeded from ``TRADING_PAIRS``.

    Read every tick (one Query), so a change takes effect from the next slot. While DynamoDB
    fails, the last registry read keeps the cache fresh: a registry outage must not stop prices.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        registry = store.list_registry(deps.table)
        if not registry:
            seeded = store.seed_registry(deps.table, deps.settings.trading_pairs, now_ms=now)
            logger.info("pair registry seeded", pairs=seeded)
            registry = store.list_registry(deps.table)
    except (BotoCoreError, ClientError) as exc:
        if deps.registry is None:
            raise
        logger.warning("pair registry unreadable; using the last one read", error=type(exc).__name__)
        deps.count_store_error()
        return deps.registry
    deps.registry = sorted(registry, key=lambda record: record.pair)
    return deps.registry


def exchange_pause(venue: Venue, slot: cache.SlotStart, now: int) -> tuple[int, str] | None:
    """Until when, and why, ``venue`` may not be asked: a ban (from the cache, shared by every
    invocation, or from this container's memory, so a failed cache write cannot make us forget
    it), or its circuit open and not yet due for a probe."""
    bans = (slot.bans.get(venue.name), venue.ban)
    ban = max((b for b in bans if b), key=lambda b: int(b.get("until", 0)), default=None)
    if ban and int(ban.get("until", 0)) > now:
        return int(ban["until"]), _ban_reason(ban)
    circuit = stored_circuit(venue, slot)
    if not circuit.allows(now):
        wait_s = (circuit.retry_at - now) / 1000
        return (
            circuit.retry_at,
            f"circuit open after {circuit.failures} failed ticks; next probe in {wait_s:.1f} s",
        )
    return None


def stored_circuit(venue: Venue, slot: cache.SlotStart) -> Circuit:
    """The exchange's breaker as every invocation shares it in the cache; this container's copy
    while the cache is lost."""
    return Circuit.from_fields(slot.circuits.get(venue.name, {})) if slot.cache_ok else venue.circuit


def _ban_reason(ban: dict[str, Any]) -> str:
    status = ban.get("status")
    if status not in (418, 429):  # a pause of our own, e.g. the weight budget: its reason says why
        return str(ban.get("reason"))
    kind = "IP banned (HTTP 418)" if status == 418 else "rate limited (HTTP 429)"
    return f"{kind}; no request until Retry-After has passed"


def _read_listing(venue: Venue, outcome: SourceResult, now: int, needed_after: int) -> bool:
    """Read the exchange's listing when due; True when a listing came back this tick."""
    if not venue.directory.due(now, needed_after=needed_after):
        return False
    outcome.requests += 1
    try:
        venue.directory.read(venue.source, now)
    except ExchangeError as exc:
        outcome.failed(exc)
        return False
    except Exception as exc:  # one exchange's bug must not cost the others' prices
        logger.exception("listing read failed", exchange=venue.name)
        outcome.failed(ExchangeError("internal", f"{type(exc).__name__}: {exc}"))
        return False
    return True


def route_tick(
    deps: FetcherDeps, pairs: list[str], unavailable: dict[str, str], now: int
) -> tuple[dict[str, Route], dict[str, str], dict[str, dict[str, Any]]]:
    """Route ``pairs``; an exchange whose share would pass its own budget (Binance's weight a
    minute) pauses itself instead, and its pairs go to the next exchange that lists them. Pairs
    beyond what an exchange can fetch in one slot (Coinbase: a request per pair) go to the next
    exchange that lists them too, where there is one."""
    listings = {
        name: venue.directory.servable(venue.source.servable_status) for name, venue in deps.venues.items()
    }
    order = list(deps.venues)
    pauses: dict[str, dict[str, Any]] = {}
    while True:
        routing = route_pairs(pairs, order, listings, unavailable=unavailable, holds=deps.holds, now_ms=now)
        paused_now = False
        for name, symbols in routes_by_exchange(routing.routes.values()).items():
            reason = deps.venues[name].source.pause_reason(symbols, now_ms())
            if reason is not None:
                until = (now // WEIGHT_WINDOW_MS + 1) * WEIGHT_WINDOW_MS
                pauses[name] = {"until": until, "status": 0, "reason": reason}
                unavailable[name] = reason
                paused_now = True
        if not paused_now:
            break
    routes = dict(routing.routes)
    slot_s = deps.settings.fetch_interval_ms / 1000
    for name, share in routes_by_exchange(routing.routes.values()).items():
        capacity = deps.venues[name].source.capacity(slot_s)
        if capacity is None or len(share) <= capacity:
            continue
        # Pairs on their first exchange stay; those failed over to it move on first.
        keep = sorted(share, key=lambda pair: not routes[pair].preferred)[:capacity]
        overflow = [pair for pair in share if pair not in keep]
        full = {**unavailable, name: "its request rate is spent this slot"}
        moved = route_pairs(overflow, order, listings, unavailable=full, holds=deps.holds, now_ms=now)
        for pair, route in moved.routes.items():
            # Only to an exchange where the pair has not just failed, and within that one's budget;
            # the others stay, served as this exchange's rate allows.
            if deps.holds.is_held(route.exchange, pair, now):
                continue
            share_there = routes_by_exchange([*routes.values(), route]).get(route.exchange, {})
            if deps.venues[route.exchange].source.pause_reason(share_there, now_ms()) is None:
                routes[pair] = route
    return routes, routing.unserved, pauses


def routes_by_exchange(routes: Iterable[Route]) -> dict[str, dict[str, str]]:
    """exchange -> {pair: the exchange's own name for it}."""
    grouped: dict[str, dict[str, str]] = {}
    for route in routes:
        grouped.setdefault(route.exchange, {})[route.pair] = route.symbol
    return grouped


def fetch_routed(
    deps: FetcherDeps, routes: dict[str, Route], outcomes: dict[str, SourceResult], *, deadline: float
) -> int | None:
    """Ask every exchange for its share at the same time; returns the phase's ms (None: no request)."""
    grouped = routes_by_exchange(routes.values())
    if not grouped:
        return None
    started = time.monotonic()
    futures = {
        name: deps.executor.submit(deps.venues[name].source.fetch, share, deadline=deadline)
        for name, share in grouped.items()
    }
    now = now_ms()
    for name, future in futures.items():
        try:
            fetched = future.result()
        except Exception as exc:  # one exchange's bug must not cost the others' prices
            logger.exception("exchange fetch failed", exchange=name)
            fetched = SourceResult(name)
            fetched.failed(ExchangeError("internal", f"{type(exc).__name__}: {exc}"))
            for pair in grouped[name]:
                fetched.missing[pair] = "exchange error: internal"
        outcome = outcomes[name]
        outcome.tickers.update(fetched.tickers)
        outcome.missing.update(fetched.missing)
        outcome.invalid.update(fetched.invalid)
        outcome.errors.extend(fetched.errors)
        outcome.requests += fetched.requests
        outcome.rate_limited = outcome.rate_limited or fetched.rate_limited
        outcome.deferred |= fetched.deferred
        outcome.rejected.extend(fetched.rejected)
        outcome.fetch_ms = fetched.fetch_ms
        directory = deps.venues[name].directory
        for symbol in fetched.rejected:
            directory.reject(symbol, now)
        if fetched.listing_changed:
            directory.next_read_at = 0
        share = [route for route in routes.values() if route.exchange == name]
        deps.holds.record(
            share,
            served=fetched.tickers,
            failed=fetched.failed_pairs(grouped[name]),
            now_ms=now,
        )
    return round((time.monotonic() - started) * 1000)


@dataclass
class SharedState:
    """What a tick leaves in the cache for the invocation that takes the next slot."""

    holds: dict[str, str]  # every failure hold, as FailureHolds.as_fields gives them
    pace: dict[str, int]  # exchange -> no request before (epoch ms)
    kept: dict[str, dict[str, bytes]]  # exchange -> slow figures read this tick
    kept_unusable: dict[str, list[str]]  # exchange -> cached figures too old or malformed


def run_tick(deps: FetcherDeps, slot: cache.SlotStart, started_at: int, *, deadline: float) -> TickResult:
    """Fetch every listed pair once and write the results: the body of one claimed slot."""
    settings = deps.settings
    result = TickResult()
    records = read_registry(deps, started_at)
    status: dict[str, str] = {record.pair: record.status for record in records}
    reasons = {record.pair: record.reason for record in records}
    pending = [record for record in records if record.status == "pending"]
    venues = list(deps.venues.values())
    outcomes = result.exchanges = {venue.name: SourceResult(venue.name) for venue in venues}
    if slot.holds is not None:  # the holds every invocation shares; this container's while the cache is lost
        stored = dict(slot.holds)
        if deps.holds_unsaved is not None:  # the last tick's changes, which its cache write lost
            changed, ended = deps.holds_unsaved
            stored = {key: value for key, value in {**stored, **changed}.items() if key not in ended}
        deps.holds, deps.holds_stored = FailureHolds.from_fields(stored), stored
    unusable: dict[str, list[str]] = {}
    for venue in venues:  # another invocation may have asked this exchange at the end of the last slot
        if venue.source.pacer is not None and venue.name in slot.pace:
            venue.source.pacer.not_before_ms(slot.pace[venue.name])
        if venue.source.kept is not None:
            cached = slot.kept.get(venue.name, {})
            accept = venue.source.accept_kept
            unusable[venue.name] = merge_kept(venue.source.kept, cached, now_ms=started_at, accept=accept)

    unavailable: dict[str, str] = {}
    for venue in venues:
        pause = exchange_pause(venue, slot, started_at)
        if pause is not None:
            unavailable[venue.name] = pause[1]
    # Verdicts need listings read after the submission (an older copy may predate a listing or a
    # halt): one read per exchange for all pending pairs of the tick, once per submission, and the
    # submission caps bound how often that can be.
    newest_pending = max((pending_since(record) for record in pending), default=0)
    asked = [venue for venue in venues if venue.name not in unavailable]
    reads = deps.executor.map(
        lambda venue: _read_listing(venue, outcomes[venue.name], started_at, newest_pending), asked
    )
    listings_read = {venue.name for venue, read in zip(asked, list(reads), strict=True) if read}
    for venue in asked:
        if outcomes[venue.name].rate_limited is not None:
            unavailable[venue.name] = "rate limited"  # a ban must never be followed by a ticker call
    views = [venue.directory.view(venue.name, venue.source.servable_status) for venue in venues]

    # Pending pairs that trade are fetched with the others: their ticker is the liquidity check,
    # so verification costs no request of its own.
    served = [pair for pair, state in status.items() if state == "active"]
    candidates = [p.pair for p in pending if any(view.trading(p.pair) for view in views)]
    result.routes, unserved, result.paused = route_tick(deps, served + candidates, unavailable, started_at)
    result.fetch_ms = fetch_routed(deps, result.routes, outcomes, deadline=deadline)
    for outcome in outcomes.values():
        result.tickers.update(outcome.tickers)
        result.missing.update(outcome.missing)
        result.invalid.update(outcome.invalid)
        result.errors.extend(outcome.errors)
        result.requests += outcome.requests
    result.missing.update(unserved)
    for pair, reason in result.invalid.items():
        result.missing[pair] = f"invalid ticker dropped: {reason}"

    transitions = decide_pending(
        pending, views, result.tickers, min_quote_volume=settings.whitelist_min_quote_volume
    )
    if listings_read:  # re-checks only when a listing came back just now
        listed = [record for record in records if record.status in ("active", "suspended")]
        transitions += recheck_listed(listed, views)
    result.applied = apply_transitions(deps, transitions, started_at)
    for transition in result.applied:
        status[transition.pair] = transition.to
        reasons[transition.pair] = transition.reason
    # Served: active pairs, plus suspended ones from their last copy (flagged stale by age).
    pairs = sorted(pair for pair, state in status.items() if state in ("active", "suspended"))
    result.tickers = {pair: t for pair, t in result.tickers.items() if status.get(pair) == "active"}
    result.missing = {pair: why for pair, why in result.missing.items() if status.get(pair) == "active"}
    for pair in pairs:
        if status[pair] == "suspended":
            result.missing[pair] = f"suspended: {reasons[pair]}"
    if slot.cache_ok:
        hold_back_jumps(deps, result)
    result.pairs_by_status = dict(Counter(status.values()))
    result.stale_pairs = sum(1 for pair in pairs if status[pair] == "active" and pair not in result.tickers)

    finished_at = now_ms()
    fields = {
        "lastFetchDurationMs": str(finished_at - started_at),
        "missingPairs": orjson.dumps(result.missing).decode(),
        "pairsByStatus": orjson.dumps(result.pairs_by_status).decode(),
        "pairSources": orjson.dumps(
            {
                pair: {"exchange": route.exchange, "symbol": route.symbol, "preferred": route.preferred}
                for pair, route in sorted(result.routes.items())
                if status.get(pair) == "active"
            }
        ).decode(),
    }
    circuits = settle_exchanges(deps, slot, result, fields, finished_at)
    leave = SharedState(
        holds=deps.holds.as_fields(now_ms()),
        pace={  # only for the exchanges this tick asked: it must not undo another invocation's
            name: venue.source.pacer.next_start_ms()
            for name, venue in deps.venues.items()
            if venue.source.pacer is not None and result.exchanges[name].requests
        },
        kept={
            name: share_kept(venue.source.kept, since_ms=started_at)
            for name, venue in deps.venues.items()
            if venue.source.kept is not None
        },
        kept_unusable=unusable,
    )
    result.duration_ms = finished_at - started_at
    if result.fetch_ms is not None:
        fields["syncLatencyMs"] = str(result.fetch_ms)
    if result.tickers:
        fields["lastFetchTime"] = str(finished_at)
    if result.errors:
        fields["lastError"] = f"{result.errors[-1].kind}: {result.errors[-1]}"[:500]
    # The cache first (freshness is what readers wait for), then the durable copy, which must
    # not depend on the cache write succeeding: it is what readers need when the cache fails.
    if slot.cache_ok:
        try:
            write_started = time.monotonic()
            _write_cache(deps, result, pairs, status, slot, fields, circuits, leave)
            visible_at = now_ms()
            result.cache_write_ms = round((time.monotonic() - write_started) * 1000)
            result.sync_gaps_ms = [visible_at - ticker.timestamp for ticker in result.tickers.values()]
            cache.record_write_timings(
                deps.redis, cache_write_ms=result.cache_write_ms, sync_gaps_ms=result.sync_gaps_ms
            )
        except cache.CACHE_ERRORS as exc:
            logger.warning("cache write failed; last known good is still written", error=type(exc).__name__)
    try:
        result.lkg_written = write_last_known_good(deps, result.tickers, slot.lkg_written, finished_at)
    except Exception:
        logger.exception("last known good write failed; retried when next due")
        deps.count_store_error()  # counted with the next tick's stats
    return result


def settle_exchanges(
    deps: FetcherDeps, slot: cache.SlotStart, result: TickResult, fields: dict[str, str], now: int
) -> dict[str, dict[str, str]]:
    """After the requests: each exchange's bans, circuit and figures for health.

    Returns the circuits to store: only those of exchanges asked this tick (one not asked keeps its
    state). The breaker counts ticks on which an exchange was asked and gave nothing because it
    failed (bans and our own pauses are handled apart): it opens after a few, and backs off while
    probes fail.
    """
    circuits: dict[str, dict[str, str]] = {}
    figures: dict[str, dict[str, Any]] = {}
    advice = []
    for name, venue in deps.venues.items():
        outcome = result.exchanges[name]
        pause = result.paused.get(name)
        if pause is not None:
            remember_ban(deps, name, pause, now)
            logger.warning(
                "weight budget reached: pausing until the next minute", exchange=name, reason=pause["reason"]
            )
        if outcome.rate_limited is not None:
            retry = outcome.rate_limited
            until = now + retry.retry_after_s * 1000
            known = max(int((ban or {}).get("until", 0)) for ban in (slot.bans.get(name), venue.ban))
            # A ban only ever grows: a short 429 window must not replace a longer 418 ban.
            ban = {"until": max(until, known), "status": retry.status or 429, "reason": str(retry)}
            remember_ban(deps, name, ban, now)
            logger.warning(
                "exchange rate limit: pausing",
                exchange=name,
                status=retry.status,
                retry_after_s=retry.retry_after_s,
            )
        previous = stored_circuit(venue, slot)
        venue.circuit = previous
        if outcome.requests:
            failed = not outcome.tickers and bool(outcome.errors) and outcome.rate_limited is None
            venue.circuit = previous.after_tick(
                failed=failed, now=now, interval_ms=deps.settings.fetch_interval_ms, rng=deps.rng
            )
            circuits[name] = venue.circuit.as_fields()
            if venue.circuit.state == "open" and previous.state != "open":
                logger.warning(
                    "exchange circuit opened",
                    exchange=name,
                    failures=venue.circuit.failures,
                    retry_at=venue.circuit.retry_at,
                )
        used_weight = venue.source.used_weight if outcome.requests else None
        if used_weight is not None:
            result.used_weight = max(result.used_weight or 0, used_weight)
        figures[name] = {
            "pairs": sorted(outcome.tickers),
            "requests": outcome.requests,
            "fetchMs": outcome.fetch_ms,
            "usedWeight": venue.source.used_weight,
            "errors": len(outcome.errors),
        }
        if outcome.errors:
            fields[f"lastError:{name}"] = f"{outcome.errors[-1].kind}: {outcome.errors[-1]}"[:500]
        if any(error.kind == "restricted_location" for error in outcome.errors) or venue.directory.refused:
            advice.append(
                RESTRICTED_LOCATION_ADVICE
                if name == "binance"
                else f"{name} refuses requests from this location (HTTP 451)"
            )
    fields["exchanges"] = orjson.dumps(figures).decode()
    if result.used_weight is not None:
        fields["usedWeight"] = str(result.used_weight)
    # Advice for operators stays in health while the cause lasts, and goes with it.
    fields["exchangeAdvice"] = "; ".join(advice)
    return circuits


def hold_back_jumps(deps: FetcherDeps, result: TickResult) -> None:
    """Drop from this tick's writes any price that jumped past MAX_PRICE_JUMP_RATIO from the last
    good one, unless it confirms the price held last tick; the held ones wait in the cache."""
    try:
        last_good, unconfirmed = cache.read_previous(deps.redis, list(result.tickers))
    except cache.CACHE_ERRORS:
        return  # nothing to compare with: the write below will fail the same way
    prices = {pair: ticker.price for pair, ticker in result.tickers.items()}
    verdicts = judge_jumps(prices, last_good, unconfirmed, ratio=deps.settings.max_price_jump_ratio)
    for pair, price in verdicts.held.items():
        del result.tickers[pair]
        logger.warning("price jump held back", pair=pair, price=price, last_good=last_good.get(pair))
    result.held = verdicts.held


def counts_by_kind(result: TickResult) -> dict[str, int]:
    """Stats counters per error kind (timeout, http_5xx, bad_body, ...) and per rejected ticker
    field (price, high24h, malformed, ...), so operators see what goes wrong, not only how often."""
    counts: Counter[str] = Counter(f"errors:{error.kind}" for error in result.errors)
    counts.update(f"invalid:{reason.split(':', 1)[0]}" for reason in result.invalid.values())
    return dict(counts)


def remember_ban(deps: FetcherDeps, exchange: str, ban: dict[str, Any], now: int) -> None:
    """Keep an exchange's ban in this container, in the cache (for every invocation) and in DynamoDB
    (for when the cache is lost): whichever of them survives, no request leaves before it ends."""
    from botocore.exceptions import BotoCoreError, ClientError

    deps.venues[exchange].ban = ban
    try:
        cache.set_ban(
            deps.redis,
            exchange,
            until_ms=ban["until"],
            now_ms=now,
            status=ban["status"],
            reason=ban["reason"],
        )
    except cache.CACHE_ERRORS:
        logger.warning("ban not stored in the cache; kept in DynamoDB and in memory", exchange=exchange)
    try:
        store.put_ban(deps.table, exchange, ban)
    except (BotoCoreError, ClientError):
        logger.warning("ban not stored in DynamoDB; kept in the cache and in memory", exchange=exchange)


def _write_cache(
    deps: FetcherDeps,
    result: TickResult,
    pairs: list[str],
    status: dict[str, str],
    slot: cache.SlotStart,
    fields: dict[str, str],
    circuits: dict[str, dict[str, str]],
    shared: SharedState,
) -> None:
    """The tick's one MULTI/EXEC; DynamoDB errors seen since the last one are counted in it."""
    holds = {key: value for key, value in shared.holds.items() if deps.holds_stored.get(key) != value}
    holds_ended = [key for key in deps.holds_stored if key not in shared.holds]
    deps.holds_unsaved = (holds, holds_ended)  # until the write below succeeds
    cache.write_tick(
        deps.redis,
        cache.TickWrite(
            tickers={pair: orjson.dumps(ticker.model_dump()) for pair, ticker in result.tickers.items()},
            listed=pairs,
            suspended=[pair for pair in pairs if status[pair] == "suspended"],
            unlisted_copies=slot.cached_pairs - set(pairs),
            counters={
                "fetchAttempts": 1,
                # A tick that served prices succeeded, even if one exchange or one refresh failed.
                "fetchSuccesses": 1 if result.tickers or not result.errors else 0,
                "fetchErrors": 1 if result.errors else 0,
                "invalidTickers": len(result.invalid),
                "priceJumpsHeld": len(result.held),
                **counts_by_kind(result),
                "errors:dynamodb": deps.store_errors,
            },
            fields=fields,
            held=result.held,
            circuits=circuits,
            holds=holds,
            holds_ended=holds_ended,
            pace=shared.pace,
            kept=shared.kept,
            kept_unusable=shared.kept_unusable,
        ),
        fresh_ttl_ms=deps.settings.market_data_cache_ttl_ms,
    )
    deps.store_errors = 0
    deps.holds_unsaved, deps.holds_stored = None, dict(shared.holds)


def apply_transitions(deps: FetcherDeps, transitions: list[Transition], now: int) -> list[Transition]:
    """Store each status change; one that lost a race (an admin revoke meanwhile) is dropped."""
    from botocore.exceptions import BotoCoreError, ClientError

    applied = []
    for transition in transitions:
        try:
            store.change_status(
                deps.table,
                transition.pair,
                to=transition.to,
                reason=transition.reason,
                now_ms=now,
                allowed_from=transition.allowed_from,
                exchange=transition.exchange,
                symbol=transition.symbol,
                verified=transition.verified,
            )
        except store.StatusConflictError:
            continue
        except (BotoCoreError, ClientError, KeyError):
            logger.exception("status change not stored; retried on a later tick", pair=transition.pair)
            deps.count_store_error()
            continue
        logger.info("pair status changed", pair=transition.pair, to=transition.to, reason=transition.reason)
        applied.append(transition)
    return applied


def write_last_known_good(
    deps: FetcherDeps, tickers: dict[str, Ticker], written: dict[str, int], now: int
) -> int:
    """Write to DynamoDB only the pairs whose last write is older than the write interval.

    Bounded writes: at most one per pair per LAST_KNOWN_GOOD_WRITE_INTERVAL_MS, whatever the tick
    rate, so the write bill does not grow with the fetch rate.
    """
    interval = deps.settings.last_known_good_write_interval_ms
    due = [ticker for pair, ticker in tickers.items() if now - written.get(pair, 0) >= interval]
    if not due:
        return 0
    count = store.write_last_known_good(deps.table, due, now_ms=now)
    for ticker in due:  # remembered here (for when the cache is lost) and in the cache (for all)
        written[ticker.pair] = deps.lkg_written[ticker.pair] = now
    with contextlib.suppress(*cache.CACHE_ERRORS):  # if lost, the times stay in this container
        cache.record_lkg_writes(deps.redis, {ticker.pair: now for ticker in due})
    return count
