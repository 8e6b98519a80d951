"""Fetching one slot's pairs from each exchange, within that exchange's own limits.

A source is given the pairs routed to it (pair -> the exchange's own name for it, from its
listing) and a deadline, and returns what came back. Binance (and Binance.US) take up to
``MARKET_DATA_BATCH_SIZE`` symbols per request, a few batches in flight, within a weight budget a
minute. Coinbase has no batching: one ticker request per product, started no faster than its
public limit (about 10 a second). Kraken takes every pair in one Ticker request but allows about
one request a second.

Slow-moving figures are kept between slots and refreshed a few at a time, so that per-pair calls
fit each exchange's limits: Coinbase's 24 h stats (open, high, low) every few minutes, and
Kraken's rolling 24 h open, which comes from hourly candles and so changes once an hour. A pair
whose figure has never been read is fetched first; one whose figure is merely due is served with
the figure it has until its turn comes.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from pydantic import ValidationError

from fetcher import coinbase, kraken
from fetcher.binance import WEIGHT_WINDOW_MS, BinanceClient, InvalidSymbolError, ticker_weight
from fetcher.binance import parse_ticker as parse_binance_ticker
from fetcher.exchange import ExchangeError, RateLimitedError, SymbolInfo
from market_data.clock import now_ms
from market_data.models import Ticker

# Requests are started at this share of an exchange's documented rate: clocks and the exchange's
# own counting differ, and a 429 costs more than the margin.
RATE_SHARE = 0.8
COINBASE_STATS_REFRESH_MS = 300_000
COINBASE_IN_FLIGHT = 3
# Work that can wait a slot (refreshing a figure that still serves) stops this long before the
# slot's deadline, so a slow answer cannot push the slot's writes into the next slot.
OPTIONAL_WORK_MARGIN_S = 1.0
# A Kraken rolling open whose read failed is asked again after this long.
OPEN_RETRY_MS = 60_000


class Pacer:
    """Start times at least ``1 / per_second`` apart, shared by the threads of one slot, and
    (through ``next_start_ms`` and ``not_before_ms``, kept in the cache) by the invocations that
    take the slots in turn."""

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._gap_s = 1 / per_second
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._next = 0.0

    def wait_turn(self, deadline: float) -> bool:
        """Wait for the next start time; False (and no wait) when that start and its gap would not
        both fit before ``deadline``: the next slot, whichever invocation takes it, may then start
        at once without coming too close to this one's last request."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            if start + self._gap_s > deadline:
                return False
            self._next = start + self._gap_s
        if start > now:
            self._sleep(start - now)
        return True

    def next_start_ms(self) -> int:
        """The next allowed start as epoch ms, for the invocation that takes the next slot."""
        with self._lock:
            return now_ms() + max(round((self._next - self._clock()) * 1000), 0)

    def not_before_ms(self, epoch_ms: int) -> None:
        """No start before ``epoch_ms``: another invocation's last request was paced up to then."""
        with self._lock:
            self._next = max(self._next, self._clock() + (epoch_ms - now_ms()) / 1000)


# Error kinds that mean the exchange's listing changed under us (a name it no longer knows): the
# listing is read again at the next tick, so the name is not asked for again and again.
LISTING_CHANGED_KINDS = frozenset({"invalid_symbol", "unknown_pair", "not_found"})


@dataclass
class SourceResult:
    """One exchange's part of a tick: tickers by pair, and why the others are missing.

    ``deferred`` pairs were not asked for this slot (the exchange's rate or the slot's time was
    spent, or a 429 stopped the requests): they did not fail there, so they are not held off it.
    """

    exchange: str
    tickers: dict[str, Ticker] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)
    errors: list[ExchangeError] = field(default_factory=list)
    requests: int = 0
    rate_limited: RateLimitedError | None = None
    deferred: set[str] = field(default_factory=set)
    rejected: list[str] = field(default_factory=list)  # symbols the exchange called unknown
    fetch_ms: int | None = None

    def failed(self, error: ExchangeError) -> None:
        self.errors.append(error)
        if isinstance(error, RateLimitedError):
            self.rate_limited = error

    def defer(self, pair: str, reason: str) -> None:
        self.missing[pair] = reason
        self.deferred.add(pair)

    @property
    def listing_changed(self) -> bool:
        return bool(self.rejected) or any(error.kind in LISTING_CHANGED_KINDS for error in self.errors)

    def failed_pairs(self, routed: Iterable[str]) -> set[str]:
        """Routed pairs that did not come back for a reason of this exchange's (not deferred)."""
        return {pair for pair in routed if pair not in self.tickers and pair not in self.deferred}


@dataclass
class Kept:
    """A slow-moving figure and when it was read."""

    value: Any
    read_at_ms: int


# A kept figure older than this is not served: it is read again from the exchange first. Both
# kept figures are refreshed well within it (Coinbase's stats every 5 minutes, Kraken's opens hourly).
KEPT_MAX_AGE_MS = 2 * 3_600_000
# A figure "read" further in the future than this is a broken clock, not a figure.
KEPT_MAX_SKEW_MS = 60_000


def share_kept(kept: Mapping[str, Kept], *, since_ms: int) -> dict[str, bytes]:
    """The figures read since ``since_ms`` (this tick), as the cache holds them (key -> JSON): only
    what this invocation read, so an older copy never overwrites another invocation's newer one."""
    return {
        key: orjson.dumps({"value": item.value, "readAt": item.read_at_ms})
        for key, item in kept.items()
        if item.read_at_ms >= since_ms
    }


def merge_kept(
    kept: dict[str, Kept], shared: Mapping[str, bytes], *, now_ms: int, accept: Callable[[Any], bool]
) -> list[str]:
    """Take from the cache the figures another invocation read more recently than this one, and
    drop the ones too old to serve. Returns the cached keys to delete: too old, or not a figure
    this exchange's parser would take (``accept``), so that bad data is read again, not served."""
    unusable = []
    for key, raw in shared.items():
        try:
            item = orjson.loads(raw)
            read_at, value = int(item["readAt"]), item["value"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            unusable.append(key)
            continue
        if not accept(value) or not now_ms - KEPT_MAX_AGE_MS <= read_at <= now_ms + KEPT_MAX_SKEW_MS:
            unusable.append(key)
        elif key not in kept or kept[key].read_at_ms < read_at:
            kept[key] = Kept(value, read_at)
    for key in [key for key, item in kept.items() if now_ms - item.read_at_ms > KEPT_MAX_AGE_MS]:
        del kept[key]  # e.g. a pair that left this exchange: its figure is not kept for ever
    return unusable


def _short_reason(exc: Exception) -> str:
    """``field: message`` of the first problem; the field is what operators count a rejection by."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "ticker"  # a check across fields
        return f"{where}: {first['msg']}"
    return f"malformed: {exc}"  # a field missing or not a number: counted as one kind


class ExchangeSource(Protocol):
    """What the tick asks of every exchange."""

    name: str
    servable_status: str  # the listing status under which the exchange trades a pair

    @property
    def used_weight(self) -> int | None: ...

    def listing(self) -> dict[str, SymbolInfo]: ...

    def pause_reason(self, routes: Mapping[str, str], now: int) -> str | None: ...

    def capacity(self, slot_s: float) -> int | None:
        """How many pairs one slot can fetch (None: as many as are routed, in batches)."""
        ...

    @property
    def kept(self) -> dict[str, Kept] | None:
        """Slow-moving figures kept between slots and shared through the cache (None: none)."""
        ...

    def accept_kept(self, value: Any) -> bool:
        """Whether a kept figure from the cache has the shape this exchange's parser takes."""
        ...

    @property
    def pacer(self) -> Pacer | None:
        """The exchange's request pacing, where it counts requests (None: Binance counts weight,
        and reports it itself)."""
        ...

    def fetch(self, routes: Mapping[str, str], *, deadline: float) -> SourceResult: ...


# Share of the exchange's weight limit this service allows itself: the rest is headroom for other
# clients behind the same address (a NAT gateway is shared) and for the limit's own rounding.
WEIGHT_BUDGET_SHARE = 0.9


class BinanceSource:
    """Binance's protocol (binance.com or Binance.US): batches of symbols, a few in flight, within a
    weight budget a minute; one unknown symbol is found by bisection instead of blanking a batch."""

    def __init__(self, client: BinanceClient, *, batch_size: int, executor: ThreadPoolExecutor) -> None:
        self.client = client
        self.name = client.name
        self.servable_status = "TRADING"
        self.batch_size = batch_size
        self._executor = executor  # shared by the batches of every slot: bounds the requests in flight
        self.weight_limit_1m: int | None = None  # as exchangeInfo last said

    def listing(self) -> dict[str, SymbolInfo]:
        info = self.client.exchange_info()
        self.weight_limit_1m = info.weight_limit_1m or self.weight_limit_1m
        return info.by_pair

    @property
    def used_weight(self) -> int | None:
        """What the exchange last reported in X-MBX-USED-WEIGHT-1M."""
        return self.client.last_used_weight

    def batches(self, symbols: list[str]) -> list[list[str]]:
        size = self.batch_size
        return [symbols[start : start + size] for start in range(0, len(symbols), size)]

    def pause_reason(self, routes: Mapping[str, str], now: int) -> str | None:
        """Why this slot must not call the exchange, when its requests would pass the weight budget.

        Reads what the exchange reported this minute: slowing down before the limit costs a tick or
        two, running into it costs a 429 and, repeated, an IP ban.
        """
        used, seen_at = self.client.last_used_weight, self.client.last_used_weight_at
        if used is None or seen_at // WEIGHT_WINDOW_MS != now // WEIGHT_WINDOW_MS:
            return None  # nothing reported this minute: the count has started again
        planned = sum(ticker_weight(len(batch)) for batch in self.batches(list(routes.values())))
        limit = self.weight_limit_1m or self.client.default_weight_limit_1m
        budget = int(limit * WEIGHT_BUDGET_SHARE)
        if used + planned <= budget:
            return None
        return (
            f"weight budget: {used} of {budget} used this minute, this tick needs {planned}; "
            "resuming next minute"
        )

    def capacity(self, slot_s: float) -> int | None:
        return None  # batches: the weight budget is what bounds them

    pacer = None  # the exchange reports the weight used, whichever invocation spent it
    kept = None  # every figure comes with the ticker

    def accept_kept(self, value: Any) -> bool:
        return False

    def fetch(self, routes: Mapping[str, str], *, deadline: float) -> SourceResult:
        """Fetch ``routes`` in batches; no request leaves after ``deadline`` (monotonic seconds)."""
        result = SourceResult(self.name)
        pairs_by_symbol = {symbol: pair for pair, symbol in routes.items()}
        stop = threading.Event()  # set on 429/418: no further request may leave
        lock = threading.Lock()

        def run_batch(batch: list[str]) -> None:
            outcome = _fetch_batch(self.client, batch, stop, deadline)
            if isinstance(outcome.error, RateLimitedError):
                stop.set()
            fetched_at = now_ms()
            # Parsed before taking the lock: the other batches' threads merge their answers meanwhile.
            parsed: dict[str, Ticker] = {}
            invalid: dict[str, str] = {}
            for raw in outcome.raws:
                pair = pairs_by_symbol.get(str(raw.get("symbol")) if isinstance(raw, dict) else "")
                if pair is None:
                    continue  # an answer for a name we did not ask for is not trusted
                try:
                    parsed[pair] = parse_binance_ticker(raw, pair, fetched_at=fetched_at, exchange=self.name)
                except (ValidationError, ValueError) as exc:
                    invalid[pair] = _short_reason(exc)
            answered = {str(raw.get("symbol")) for raw in outcome.raws if isinstance(raw, dict)}
            with lock:
                result.requests += outcome.requests
                result.rejected.extend(outcome.rejected)
                for symbol in outcome.rejected:
                    result.missing[pairs_by_symbol[symbol]] = f"{self.name} rejected {symbol}: Invalid symbol"
                error = outcome.error
                if error is not None:
                    result.failed(error)
                for symbol in batch:
                    if symbol in outcome.rejected or symbol in answered:
                        continue
                    pair = pairs_by_symbol[symbol]
                    if outcome.requests == 0:  # never asked: the slot's time ran out, or a 429 came
                        why = error.kind if error else "the exchange answered 429 to another batch"
                        result.defer(pair, f"not fetched this slot: {why}")
                    elif isinstance(error, RateLimitedError):
                        result.defer(pair, f"exchange error: {error.kind}")
                    elif error is None:
                        result.missing[pair] = "absent from the exchange's answer"
                    else:
                        result.missing.setdefault(pair, f"exchange error: {error.kind}")
                result.tickers.update(parsed)
                result.invalid.update(invalid)

        started = time.monotonic()
        list(self._executor.map(run_batch, self.batches(list(routes.values()))))
        result.fetch_ms = round((time.monotonic() - started) * 1000)
        return result


@dataclass
class BatchOutcome:
    raws: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # symbols the exchange called invalid
    requests: int = 0
    error: ExchangeError | None = None  # the first failure; what was fetched before it is kept


def _fetch_batch(
    client: BinanceClient, batch: list[str], stop: threading.Event, deadline: float
) -> BatchOutcome:
    """One request for the batch; on -1121 bisect so one unknown name cannot blank the others.

    Bisection costs at most 2 * log2(batch) extra requests for one bad name, and only when the
    listing changed under us; a failure half-way keeps the halves already fetched.
    """
    if stop.is_set():
        return BatchOutcome()  # a 429 came for another batch: this one is not asked
    if time.monotonic() >= deadline:
        return BatchOutcome(error=ExchangeError("deadline", "no time left in this slot"))
    try:
        return BatchOutcome(raws=client.tickers(batch), requests=1)
    except InvalidSymbolError:
        if len(batch) == 1:
            return BatchOutcome(rejected=list(batch), requests=1)
    except ExchangeError as exc:
        return BatchOutcome(requests=1, error=exc)
    middle = len(batch) // 2
    left = _fetch_batch(client, batch[:middle], stop, deadline)
    right = _fetch_batch(client, batch[middle:], stop, deadline)
    return BatchOutcome(
        raws=left.raws + right.raws,
        rejected=left.rejected + right.rejected,
        requests=1 + left.requests + right.requests,
        error=left.error or right.error,
    )


class CoinbaseSource:
    """Coinbase Exchange: a ticker request per product, paced; 24 h stats refreshed every few minutes."""

    name = coinbase.EXCHANGE
    servable_status = coinbase.SERVABLE_STATUS
    used_weight: int | None = None  # Coinbase counts requests, not weight: the pacer keeps to them

    def __init__(
        self,
        client: coinbase.CoinbaseClient,
        *,
        requests_per_s: float = coinbase.PUBLIC_RATE_LIMIT_PER_S * RATE_SHARE,
        stats_refresh_ms: int = COINBASE_STATS_REFRESH_MS,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.client = client
        self.requests_per_s = requests_per_s
        self.stats_refresh_ms = stats_refresh_ms
        self._clock_ms = clock_ms
        self.stats: dict[str, Kept] = {}  # product id -> its last /stats body
        self.kept = self.stats
        self.served_at: dict[str, int] = {}  # product id -> when its last ticker came back
        self.pacer = Pacer(requests_per_s)  # the rate is the exchange's, across slots

    def listing(self) -> dict[str, SymbolInfo]:
        self.pacer.wait_turn(math.inf)  # a request like any other against the exchange's rate
        return self.client.products()

    def pause_reason(self, routes: Mapping[str, str], now: int) -> str | None:
        return None  # the pacer spreads the requests instead

    def capacity(self, slot_s: float) -> int | None:
        """A ticker request per pair at the paced rate, with a quarter of the slot left for the
        24 h stats refreshes and the answers' time."""
        return max(int(self.requests_per_s * slot_s * 0.75), 1)

    @staticmethod
    def accept_kept(value: Any) -> bool:
        return isinstance(value, dict) and all(name in value for name in ("open", "high", "low"))

    def fetch(self, routes: Mapping[str, str], *, deadline: float) -> SourceResult:
        result = SourceResult(self.name)
        pacer, stop, lock = self.pacer, threading.Event(), threading.Lock()
        now = self._clock_ms()
        due = sorted(
            (product for product in routes.values() if self._stats_due(product, now)),
            key=lambda product: self.stats[product].read_at_ms if product in self.stats else -1,
        )
        # Stats that are merely due wait while this slot's requests are needed for tickers.
        budget = int(max(deadline - time.monotonic(), 0) * self.requests_per_s) - len(routes)
        refresh = {p for p in due if p not in self.stats} | set(due[: max(budget, 0)])

        def take_turn() -> None:
            if not pacer.wait_turn(deadline):
                raise _Skipped("not fetched this slot: coinbase's request rate is spent")
            if stop.is_set():  # after the wait too: a 429 may have come while this one waited
                raise _Skipped("not fetched this slot: coinbase answered 429")
            with lock:
                result.requests += 1

        def refresh_stats(product: str) -> None:
            """The figures kept from the last refresh still serve when this one cannot be made."""
            try:
                take_turn()
                self.stats[product] = Kept(self.client.stats(product), self._clock_ms())
            except _Skipped:
                if product not in self.stats:
                    raise
            except ExchangeError as exc:
                if isinstance(exc, RateLimitedError):
                    stop.set()
                with lock:
                    result.failed(exc)
                if product not in self.stats:
                    raise _Skipped(f"exchange error: {exc.kind}", failed=True) from exc

        def fetch_pair(pair: str, product: str) -> None:
            try:
                if product in refresh:
                    refresh_stats(product)
                take_turn()
                raw = self.client.ticker(product)
                fetched_at = self._clock_ms()
                ticker = coinbase.parse_ticker(
                    raw, self.stats[product].value, pair, product_id=product, fetched_at=fetched_at
                )
                with lock:
                    result.tickers[pair] = ticker
                    self.served_at[product] = fetched_at
            except _Skipped as skipped:
                with lock:
                    if skipped.failed:
                        result.missing[pair] = str(skipped)
                    else:
                        result.defer(pair, str(skipped))
            except RateLimitedError as exc:
                stop.set()  # no further request may leave in this slot
                with lock:
                    result.failed(exc)
                    result.defer(pair, f"exchange error: {exc.kind}")
            except ExchangeError as exc:
                with lock:
                    result.failed(exc)
                    result.missing[pair] = f"exchange error: {exc.kind}"
            except (ValidationError, ValueError) as exc:
                with lock:
                    result.invalid[pair] = _short_reason(exc)

        # The longest unserved first: when the slot's rate runs out, the pairs left over are served
        # first in the next slot, rather than the same ones missing every slot.
        order = sorted(routes.items(), key=lambda item: self.served_at.get(item[1], 0))
        started = time.monotonic()
        with ThreadPoolExecutor(COINBASE_IN_FLIGHT, thread_name_prefix="coinbase") as pool:
            list(pool.map(lambda item: fetch_pair(*item), order))
        result.fetch_ms = round((time.monotonic() - started) * 1000)
        return result

    def _stats_due(self, product: str, now: int) -> bool:
        kept = self.stats.get(product)
        return kept is None or now - kept.read_at_ms >= self.stats_refresh_ms


class KrakenSource:
    """Kraken: every pair in one Ticker request; each pair's rolling 24 h open once an hour."""

    name = kraken.EXCHANGE
    servable_status = kraken.SERVABLE_STATUS
    used_weight: int | None = None  # Kraken counts requests, not weight: the pacer keeps to them

    def __init__(
        self,
        client: kraken.KrakenClient,
        *,
        requests_per_s: float = kraken.PUBLIC_REQUESTS_PER_S * RATE_SHARE,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.client = client
        self.requests_per_s, self._clock_ms = requests_per_s, clock_ms
        self.opens: dict[str, Kept] = {}  # the pair's canonical key -> its rolling 24 h open
        self.kept = self.opens
        self.open_failures: dict[str, tuple[int, str]] = {}  # key -> when its open last failed, why
        self.pacer = Pacer(requests_per_s)  # the rate is the exchange's, across slots

    def listing(self) -> dict[str, SymbolInfo]:
        self.pacer.wait_turn(math.inf)  # a request like any other against the exchange's rate
        return self.client.asset_pairs()

    def pause_reason(self, routes: Mapping[str, str], now: int) -> str | None:
        return None  # the pacer spreads the requests instead

    def capacity(self, slot_s: float) -> int | None:
        return None  # one Ticker request carries every pair

    @staticmethod
    def accept_kept(value: Any) -> bool:
        return isinstance(value, int | float) and math.isfinite(value) and value > 0

    def fetch(self, routes: Mapping[str, str], *, deadline: float) -> SourceResult:
        result = SourceResult(self.name)
        pacer = self.pacer
        hour = self._clock_ms() // kraken.HOUR_MS
        now = self._clock_ms()
        # An open that just failed is not asked again at once: a pair Kraken lists without candles
        # would otherwise take the slot's first request every slot.
        retry_later = {
            key: why
            for key, (failed_at, why) in self.open_failures.items()
            if key not in self.opens and now - failed_at < OPEN_RETRY_MS
        }
        never_read = [key for key in routes.values() if key not in self.opens and key not in retry_later]
        from_an_earlier_hour = [
            key
            for key in routes.values()
            if key in self.opens and self.opens[key].read_at_ms // kraken.HOUR_MS < hour
        ]
        try:
            # A pair without an open cannot be served: those first, then the one Ticker request,
            # then the opens that are merely an hour old, as far as the slot's time goes.
            # While no routed pair has an open yet, a Ticker request would serve nothing: the
            # slot's turns all go to the opens.
            servable = any(key in self.opens for key in routes.values())
            failed_opens = self._read_opens(never_read, pacer, deadline, result, keep_one_turn=servable)
            raws: dict[str, dict[str, Any]] = {}
            asked = any(key in self.opens for key in routes.values()) and pacer.wait_turn(deadline)
            if asked:
                result.requests += 1
                started = time.monotonic()
                raws = self.client.tickers(list(routes.values()))
                result.fetch_ms = round((time.monotonic() - started) * 1000)
            fetched_at = self._clock_ms()
        except ExchangeError as exc:
            result.failed(exc)
            for pair in routes:
                if isinstance(exc, RateLimitedError):
                    result.defer(pair, f"exchange error: {exc.kind}")
                else:
                    result.missing[pair] = f"exchange error: {exc.kind}"
            return result
        try:  # the hour-old opens still serve if this fails; the prices are in hand
            # Optional work: it stops early enough that the slot's writes are not pushed into the next.
            self._read_opens(
                from_an_earlier_hour, pacer, deadline - OPTIONAL_WORK_MARGIN_S, result, keep_one_turn=False
            )
        except RateLimitedError as exc:
            result.failed(exc)
        for pair, key in routes.items():
            if key in failed_opens or key in retry_later:
                result.missing[pair] = failed_opens.get(key) or retry_later[key]
            elif key not in self.opens:
                result.defer(pair, "not fetched this slot: its rolling 24 h open is not read yet")
            elif not asked:
                result.defer(pair, "not fetched this slot: kraken's request rate is spent")
            elif key not in raws:
                result.missing[pair] = "absent from the exchange's answer"
            else:
                try:
                    result.tickers[pair] = kraken.parse_ticker(
                        raws[key], pair, symbol=key, fetched_at=fetched_at, open_24h=self.opens[key].value
                    )
                except (ValidationError, ValueError) as exc:
                    result.invalid[pair] = _short_reason(exc)
        return result

    def _read_opens(
        self, keys: list[str], pacer: Pacer, deadline: float, result: SourceResult, *, keep_one_turn: bool
    ) -> dict[str, str]:
        """Read the keys' rolling opens as far as the time goes; returns the keys whose read failed
        (why), so that one pair's failure costs only that pair. A rate limit stops them all."""
        # Before the Ticker request, one turn is kept for it: an open without a price serves nothing.
        # But the first open of a slot is read whatever: otherwise, when a slot has room for only
        # one request, the Ticker would take it every slot and a new pair would never be served.
        cutoff = deadline - (1 / self.requests_per_s if keep_one_turn else 0)
        failed: dict[str, str] = {}
        for index, key in enumerate(keys):
            if not pacer.wait_turn(deadline if index == 0 else cutoff):
                break
            result.requests += 1
            read_at = self._clock_ms()
            try:
                self.opens[key] = Kept(self.client.rolling_open(key, now_ms=read_at), read_at)
            except RateLimitedError:
                raise
            except ExchangeError as exc:
                result.failed(exc)
                failed[key] = f"exchange error: {exc.kind} (its rolling 24 h open)"
                self.open_failures[key] = (read_at, failed[key])
            else:
                self.open_failures.pop(key, None)
        return failed


class _Skipped(Exception):
    """A request that may not leave in this slot (``failed``: because a needed one failed); the
    message says why."""

    def __init__(self, message: str, *, failed: bool = False) -> None:
        super().__init__(message)
        self.failed = failed
