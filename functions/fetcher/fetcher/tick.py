"""One tick: resolve the listed pairs, fetch their tickers in weight-aware batches, validate, write.

Plain functions over explicit collaborators (``FetcherDeps``), so tests drive them with a real
redis-server, moto and the exchange simulator.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError

from fetcher.binance import (
    RESTRICTED_LOCATION_ADVICE,
    WEIGHT_WINDOW_MS,
    BinanceClient,
    InvalidSymbolError,
    ticker_weight,
)
from fetcher.binance import parse_ticker as parse_binance_ticker
from fetcher.circuit import Circuit
from fetcher.exchange import ExchangeError, ExchangeInfo, RateLimitedError
from fetcher.jumps import judge_jumps
from fetcher.verify import Transition, decide_pending, pending_since, recheck_listed
from market_data import cache, store
from market_data.clock import now_ms
from market_data.models import PairRecord, Ticker
from market_data.observability import logger

if TYPE_CHECKING:
    from redis import Redis

    from market_data.config import Settings


@dataclass
class SymbolDirectory:
    """exchangeInfo, kept per container and refreshed every ``refresh_ms`` (weight 20 a call).

    Symbols the exchange rejected with -1121 are left out until the next regular refresh, so one
    stale name costs one bisection, not one per tick.
    """

    refresh_ms: int
    info: ExchangeInfo | None = None
    fetched_at: int = 0
    refresh_due: bool = True
    rejected: dict[str, int] = field(default_factory=dict)  # symbol -> when it was rejected

    def current(self, exchange: BinanceClient, now: int) -> ExchangeInfo:
        if self.info is None or self.refresh_due or now - self.fetched_at >= self.refresh_ms:
            try:
                self.info = exchange.exchange_info()
            except RateLimitedError:
                raise  # a ban must pause the tick, never be followed by a ticker call
            except ExchangeError:
                if self.info is None:
                    raise
                self.refresh_due, self.fetched_at = False, now  # retry at the next regular refresh
                logger.warning("exchangeInfo refresh failed; using the previous listing")
            else:
                if now - self.fetched_at >= self.refresh_ms:
                    self.rejected.clear()
                # When the listing was actually read (not when the tick began): a submission made
                # while this tick started is then judged on this read, not one tick later.
                self.fetched_at, self.refresh_due = now_ms(), False
        return self.info

    def reject(self, symbol: str, now: int) -> None:
        self.rejected[symbol] = now
        self.refresh_due = True  # the listing changed under us: read it again next tick


@dataclass
class FetcherDeps:
    """Everything a tick needs, created once per container (see handler.py)."""

    settings: Settings
    redis: Redis
    table: Any
    exchange: BinanceClient
    executor: ThreadPoolExecutor
    directory: SymbolDirectory
    registry: list[PairRecord] | None = None  # the last registry read, used while DynamoDB fails
    ban: dict[str, Any] | None = None  # the last rate-limit ban seen by this container
    lkg_written: dict[str, int] = field(default_factory=dict)  # used while the cache is lost
    circuit: Circuit = field(default_factory=Circuit)  # the breaker as this container last saw it
    store_errors: int = 0  # DynamoDB failures not yet counted in the stats
    store_errors_total: int = 0  # DynamoDB failures since the container started (for metrics)
    rng: random.Random = field(default_factory=random.Random)  # backoff jitter

    def count_store_error(self) -> None:
        self.store_errors += 1
        self.store_errors_total += 1


@dataclass
class TickResult:
    tickers: dict[str, Ticker] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # pair -> why it is not served this tick
    invalid: dict[str, str] = field(default_factory=dict)  # pair -> why its ticker was dropped
    errors: list[ExchangeError] = field(default_factory=list)
    requests: int = 0
    rate_limited: RateLimitedError | None = None
    held: dict[str, float] = field(default_factory=dict)  # jumped prices not written this tick
    paused: dict[str, Any] | None = None  # a self-imposed pause (the weight budget), kept like a ban
    lkg_written: int = 0
    applied: list[Transition] = field(default_factory=list)  # status changes stored this tick
    pairs_by_status: dict[str, int] = field(default_factory=dict)
    stale_pairs: int = 0  # active pairs whose price this tick did not refresh
    fetch_ms: int | None = None  # the exchange phase; None when no ticker request was made
    duration_ms: int = 0
    cache_write_ms: int | None = None  # None when the cache write did not happen or failed
    sync_gaps_ms: list[int] = field(default_factory=list)  # per written pair: ticker time -> visible
    used_weight: int | None = None  # as the exchange reported it on this tick's last answer


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


def resolve_symbols(
    pairs: Sequence[str], info: ExchangeInfo, directory: SymbolDirectory, exchange_name: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Map pairs to exchange symbols through base/quote assets; never by guessing names."""
    symbols: dict[str, str] = {}
    missing: dict[str, str] = {}
    for pair in pairs:
        listing = info.by_pair.get(pair)
        if listing is None:
            missing[pair] = f"not listed on {exchange_name}"
        elif listing.status != "TRADING":
            missing[pair] = f"{exchange_name} lists {listing.symbol} with status {listing.status}"
        elif listing.symbol in directory.rejected:
            missing[pair] = f"{exchange_name} rejected {listing.symbol}: Invalid symbol"
        else:
            symbols[listing.symbol] = pair
    return symbols, missing


def batches_of(names: list[str], settings: Settings) -> list[list[str]]:
    size = settings.market_data_batch_size
    return [names[start : start + size] for start in range(0, len(names), size)]


# Share of the exchange's weight limit this service allows itself: the rest is headroom for other
# clients behind the same address (a NAT gateway is shared) and for the limit's own rounding.
WEIGHT_BUDGET_SHARE = 0.9


def weight_pause(deps: FetcherDeps, info: ExchangeInfo, planned: int, now: int) -> dict[str, Any] | None:
    """A self-imposed pause until the next minute when this tick would pass the weight budget.

    Reads what the exchange reported in X-MBX-USED-WEIGHT-1M this minute: slowing down before
    the limit costs a tick or two, running into it costs a 429 and, repeated, an IP ban.
    """
    used, seen_at = deps.exchange.last_used_weight, deps.exchange.last_used_weight_at
    if used is None or seen_at // WEIGHT_WINDOW_MS != now // WEIGHT_WINDOW_MS:
        return None  # nothing reported this minute: the count has started again
    budget = int((info.weight_limit_1m or deps.exchange.default_weight_limit_1m) * WEIGHT_BUDGET_SHARE)
    if used + planned <= budget:
        return None
    reason = (
        f"weight budget: {used} of {budget} used this minute, this tick needs {planned}; resuming next minute"
    )
    return {"until": (now // WEIGHT_WINDOW_MS + 1) * WEIGHT_WINDOW_MS, "status": 0, "reason": reason}


def fetch_tickers(deps: FetcherDeps, symbols: dict[str, str], result: TickResult, *, deadline: float) -> None:
    """Fetch ``symbols`` in batches, at most MAX_CONCURRENT_BATCHES in flight; fills ``result``.

    No request leaves after ``deadline`` (monotonic seconds): a slow exchange cannot push a tick
    into the next slot or past the invocation's time.
    """
    batches = batches_of(list(symbols), deps.settings)
    stop = threading.Event()  # set on 429/418: no further request may leave
    lock = threading.Lock()

    def run_batch(batch: list[str]) -> None:
        outcome = _fetch_batch(deps.exchange, batch, stop, deadline)
        raws, rejected, requests, error = outcome.raws, outcome.rejected, outcome.requests, outcome.error
        if isinstance(error, RateLimitedError):
            stop.set()
        fetched_at = now_ms()
        # Parsed before taking the lock: the other batches' threads merge their answers meanwhile.
        parsed: dict[str, Ticker] = {}
        invalid: dict[str, str] = {}
        for raw in raws:
            pair = symbols.get(str(raw.get("symbol")) if isinstance(raw, dict) else "")
            if pair is None:
                continue  # an answer for a name we did not ask for is not trusted
            try:
                parsed[pair] = parse_binance_ticker(
                    raw, pair, fetched_at=fetched_at, exchange=deps.exchange.name
                )
            except (ValidationError, ValueError) as exc:
                invalid[pair] = _short_reason(exc)
        answered = {str(raw.get("symbol")) for raw in raws if isinstance(raw, dict)}
        with lock:
            result.requests += requests
            for symbol in rejected:
                deps.directory.reject(symbol, fetched_at)
                result.missing[symbols[symbol]] = f"{deps.exchange.name} rejected {symbol}: Invalid symbol"
            if error is not None:
                result.errors.append(error)
                if isinstance(error, RateLimitedError):
                    result.rate_limited = error
            for symbol in batch:
                if symbol in rejected or symbol in answered:
                    continue
                reason = f"exchange error: {error.kind}" if error else "absent from the exchange's answer"
                result.missing.setdefault(symbols[symbol], reason)
            result.tickers.update(parsed)
            result.invalid.update(invalid)

    list(deps.executor.map(run_batch, batches))
    for pair, reason in result.invalid.items():
        result.missing[pair] = f"invalid ticker dropped: {reason}"


@dataclass
class BatchOutcome:
    raws: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # symbols the exchange called invalid
    requests: int = 0
    error: ExchangeError | None = None  # the first failure; what was fetched before it is kept


def _fetch_batch(
    exchange: BinanceClient, batch: list[str], stop: threading.Event, deadline: float
) -> BatchOutcome:
    """One request for the batch; on -1121 bisect so one unknown name cannot blank the others.

    Bisection costs at most 2 * log2(batch) extra requests for one bad name, and only when the
    listing changed under us; a failure half-way keeps the halves already fetched.
    """
    if stop.is_set():
        return BatchOutcome()
    if time.monotonic() >= deadline:
        return BatchOutcome(error=ExchangeError("deadline", "no time left in this slot"))
    try:
        return BatchOutcome(raws=exchange.tickers(batch), requests=1)
    except InvalidSymbolError:
        if len(batch) == 1:
            return BatchOutcome(rejected=list(batch), requests=1)
    except ExchangeError as exc:
        return BatchOutcome(requests=1, error=exc)
    middle = len(batch) // 2
    left = _fetch_batch(exchange, batch[:middle], stop, deadline)
    right = _fetch_batch(exchange, batch[middle:], stop, deadline)
    return BatchOutcome(
        raws=left.raws + right.raws,
        rejected=left.rejected + right.rejected,
        requests=1 + left.requests + right.requests,
        error=left.error or right.error,
    )


def _short_reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "ticker"
        return f"{where}: {first['msg']}"
    return str(exc)


def run_tick(deps: FetcherDeps, slot: cache.SlotStart, started_at: int, *, deadline: float) -> TickResult:
    """Fetch every listed pair once and write the results: the body of one claimed slot."""
    settings = deps.settings
    result = TickResult()
    records = read_registry(deps, started_at)
    status: dict[str, str] = {record.pair: record.status for record in records}
    reasons = {record.pair: record.reason for record in records}
    pending = [record for record in records if record.status == "pending"]
    try:
        info = deps.directory.current(deps.exchange, started_at)
        if any(deps.directory.fetched_at < pending_since(p) for p in pending):
            # Verdicts need a listing read after the submission (an older copy may predate a
            # listing or a halt): one read for all pending pairs of the tick, once per
            # submission, and the submission caps bound how often that can be.
            deps.directory.refresh_due = True
            info = deps.directory.current(deps.exchange, started_at)
    except RateLimitedError as exc:
        result.errors.append(exc)
        result.rate_limited = exc
        result.requests += 1
        info = None
    except ExchangeError as exc:
        result.errors.append(exc)
        result.requests += 1
        info = None
    served = [pair for pair, state in status.items() if state == "active"]
    if info is None:
        result.missing = dict.fromkeys(served, "exchange listing unavailable")
    else:
        # Pending pairs that trade are fetched with the others: their ticker is the liquidity
        # check, so verification costs no request of its own.
        candidates = [
            p.pair for p in pending if (lst := info.by_pair.get(p.pair)) and lst.status == "TRADING"
        ]
        symbols, result.missing = resolve_symbols(
            served + candidates, info, deps.directory, deps.exchange.name
        )
        planned = sum(ticker_weight(len(batch)) for batch in batches_of(list(symbols), settings))
        result.paused = weight_pause(deps, info, planned, now_ms())
        if result.paused is None:
            fetch_started = time.monotonic()
            fetch_tickers(deps, symbols, result, deadline=deadline)
            result.fetch_ms = round((time.monotonic() - fetch_started) * 1000)
        else:
            for pair in symbols.values():
                result.missing[pair] = f"not fetched this tick: {result.paused['reason']}"
        listing_is_fresh = deps.directory.fetched_at >= started_at
        transitions = decide_pending(
            pending,
            info,
            result.tickers,
            listing_fetched_at=deps.directory.fetched_at,
            min_quote_volume=settings.whitelist_min_quote_volume,
            exchange=deps.exchange.name,
        )
        if listing_is_fresh:  # re-checks only on a listing the exchange returned just now
            listed = [record for record in records if record.status in ("active", "suspended")]
            transitions += recheck_listed(listed, info, exchange=deps.exchange.name)
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
    if result.paused is not None:
        remember_ban(deps, result.paused, finished_at)
        logger.warning("weight budget reached: pausing until the next minute", reason=result.paused["reason"])
    if result.rate_limited is not None:
        retry = result.rate_limited
        until = finished_at + retry.retry_after_s * 1000
        known = max(int((ban or {}).get("until", 0)) for ban in (slot.ban, deps.ban))
        # A ban only ever grows: a short 429 window must not replace a longer 418 ban.
        ban = {"until": max(until, known), "status": retry.status or 429, "reason": str(retry)}
        remember_ban(deps, ban, finished_at)
        logger.warning("exchange rate limit: pausing", status=retry.status, retry_after_s=retry.retry_after_s)

    result.duration_ms = finished_at - started_at
    fields = {
        "lastFetchDurationMs": str(result.duration_ms),
        "missingPairs": orjson.dumps(result.missing).decode(),
        "pairsByStatus": orjson.dumps(result.pairs_by_status).decode(),
    }
    if result.fetch_ms is not None:
        fields["syncLatencyMs"] = str(result.fetch_ms)
    if deps.exchange.last_used_weight is not None:
        fields["usedWeight"] = str(deps.exchange.last_used_weight)
        if result.requests:
            result.used_weight = deps.exchange.last_used_weight
    if result.tickers:
        fields["lastFetchTime"] = str(finished_at)
    if result.errors:
        fields["lastError"] = f"{result.errors[-1].kind}: {result.errors[-1]}"[:500]
    # Advice for operators stays in health while the cause lasts, and goes with it.
    restricted = any(error.kind == "restricted_location" for error in result.errors)
    fields["exchangeAdvice"] = RESTRICTED_LOCATION_ADVICE if restricted else ""
    # The cache first (freshness is what readers wait for), then the durable copy, which must
    # not depend on the cache write succeeding: it is what readers need when the cache fails.
    # The breaker counts ticks that fetched nothing because the exchange failed (bans and our own
    # pauses are handled apart): it opens after a few, and backs off while probes fail.
    failed = not result.tickers and bool(result.errors) and result.rate_limited is None
    previous = Circuit.from_fields(slot.circuit) if slot.cache_ok else deps.circuit
    deps.circuit = previous.after_tick(
        failed=failed, now=finished_at, interval_ms=settings.fetch_interval_ms, rng=deps.rng
    )
    if deps.circuit.state == "open" and previous.state != "open":
        logger.warning(
            "exchange circuit opened", failures=deps.circuit.failures, retry_at=deps.circuit.retry_at
        )
    if slot.cache_ok:
        try:
            write_started = time.monotonic()
            _write_cache(deps, result, pairs, status, slot, fields)
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


def remember_ban(deps: FetcherDeps, ban: dict[str, Any], now: int) -> None:
    """Keep a ban in this container, in the cache (for every invocation) and in DynamoDB (for when
    the cache is lost): whichever of them survives, no request leaves before it ends."""
    from botocore.exceptions import BotoCoreError, ClientError

    deps.ban = ban
    try:
        cache.set_ban(
            deps.redis, until_ms=ban["until"], now_ms=now, status=ban["status"], reason=ban["reason"]
        )
    except cache.CACHE_ERRORS:
        logger.warning("ban not stored in the cache; kept in DynamoDB and in memory")
    try:
        store.put_ban(deps.table, ban)
    except (BotoCoreError, ClientError):
        logger.warning("ban not stored in DynamoDB; kept in the cache and in memory")


def _write_cache(
    deps: FetcherDeps,
    result: TickResult,
    pairs: list[str],
    status: dict[str, str],
    slot: cache.SlotStart,
    fields: dict[str, str],
) -> None:
    """The tick's one MULTI/EXEC; DynamoDB errors seen since the last one are counted in it."""
    cache.write_tick(
        deps.redis,
        cache.TickWrite(
            tickers={pair: orjson.dumps(ticker.model_dump()) for pair, ticker in result.tickers.items()},
            listed=pairs,
            suspended=[pair for pair in pairs if status[pair] == "suspended"],
            unlisted_copies=slot.cached_pairs - set(pairs),
            counters={
                "fetchAttempts": 1,
                "fetchSuccesses": 0 if result.errors else 1,
                "fetchErrors": 1 if result.errors else 0,
                "invalidTickers": len(result.invalid),
                "priceJumpsHeld": len(result.held),
                **counts_by_kind(result),
                "errors:dynamodb": deps.store_errors,
            },
            fields=fields,
            held=result.held,
            circuit=deps.circuit.as_fields(),
        ),
        fresh_ttl_ms=deps.settings.market_data_cache_ttl_ms,
    )
    deps.store_errors = 0


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
