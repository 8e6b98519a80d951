"""Fetching one slot's pairs from Coinbase and Kraken, each within its own limits.

A source is given the pairs routed to it (pair -> the exchange's own name for it, from its
listing) and a deadline, and returns what came back. Coinbase has no batching: one ticker request
per product, started no faster than its public limit (about 10 a second). Kraken takes every pair
in one Ticker request but allows about one request a second.

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
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from fetcher import coinbase, kraken
from fetcher.exchange import ExchangeError, RateLimitedError, SymbolInfo
from market_data.clock import now_ms
from market_data.models import Ticker

# Requests are started at this share of an exchange's documented rate: clocks and the exchange's
# own counting differ, and a 429 costs more than the margin.
RATE_SHARE = 0.8
COINBASE_STATS_REFRESH_MS = 300_000
COINBASE_IN_FLIGHT = 3


class Pacer:
    """Start times at least ``1 / per_second`` apart, shared by the threads of one slot."""

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
        """Wait for the next start time; False (and no wait) when it would come after ``deadline``."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            if start >= deadline:
                return False
            self._next = start + self._gap_s
        if start > now:
            self._sleep(start - now)
        return True


@dataclass
class SourceResult:
    """One exchange's part of a tick: tickers by pair, and why the others are missing."""

    exchange: str
    tickers: dict[str, Ticker] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)
    errors: list[ExchangeError] = field(default_factory=list)
    requests: int = 0
    rate_limited: RateLimitedError | None = None

    def failed(self, error: ExchangeError) -> None:
        self.errors.append(error)
        if isinstance(error, RateLimitedError):
            self.rate_limited = error


@dataclass
class Kept:
    """A slow-moving figure and when it was read."""

    value: Any
    read_at_ms: int


def _short_reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return str(exc)


class CoinbaseSource:
    """Coinbase Exchange: a ticker request per product, paced; 24 h stats refreshed every few minutes."""

    name = coinbase.EXCHANGE
    servable_status = coinbase.SERVABLE_STATUS

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
        self._pacer = Pacer(requests_per_s)  # the rate is the exchange's, across slots

    def listing(self) -> dict[str, SymbolInfo]:
        self._pacer.wait_turn(math.inf)  # a request like any other against the exchange's rate
        return self.client.products()

    def fetch(self, routes: Mapping[str, str], *, deadline: float) -> SourceResult:
        result = SourceResult(self.name)
        pacer, stop, lock = self._pacer, threading.Event(), threading.Lock()
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
                    raise _Skipped(f"exchange error: {exc.kind}") from exc

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
            except _Skipped as skipped:
                with lock:
                    result.missing[pair] = str(skipped)
            except RateLimitedError as exc:
                stop.set()  # no further request may leave in this slot
                with lock:
                    result.failed(exc)
                    result.missing[pair] = f"exchange error: {exc.kind}"
            except ExchangeError as exc:
                with lock:
                    result.failed(exc)
                    result.missing[pair] = f"exchange error: {exc.kind}"
            except (ValidationError, ValueError) as exc:
                with lock:
                    result.invalid[pair] = _short_reason(exc)

        with ThreadPoolExecutor(COINBASE_IN_FLIGHT, thread_name_prefix="coinbase") as pool:
            list(pool.map(lambda item: fetch_pair(*item), routes.items()))
        return result

    def _stats_due(self, product: str, now: int) -> bool:
        kept = self.stats.get(product)
        return kept is None or now - kept.read_at_ms >= self.stats_refresh_ms


class KrakenSource:
    """Kraken: every pair in one Ticker request; each pair's rolling 24 h open once an hour."""

    name = kraken.EXCHANGE
    servable_status = kraken.SERVABLE_STATUS

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
        self._pacer = Pacer(requests_per_s)  # the rate is the exchange's, across slots

    def listing(self) -> dict[str, SymbolInfo]:
        self._pacer.wait_turn(math.inf)  # a request like any other against the exchange's rate
        return self.client.asset_pairs()

    def fetch(self, routes: Mapping[str, str], *, deadline: float) -> SourceResult:
        result = SourceResult(self.name)
        pacer = self._pacer
        hour = self._clock_ms() // kraken.HOUR_MS
        never_read = [key for key in routes.values() if key not in self.opens]
        from_an_earlier_hour = [
            key
            for key in routes.values()
            if key in self.opens and self.opens[key].read_at_ms // kraken.HOUR_MS < hour
        ]
        try:
            # A pair without an open cannot be served: those first, then the one Ticker request,
            # then the opens that are merely an hour old, as far as the slot's time goes.
            self._read_opens(never_read, pacer, deadline, result, keep_one_turn=True)
            raws: dict[str, dict[str, Any]] = {}
            if routes and pacer.wait_turn(deadline):
                result.requests += 1
                raws = self.client.tickers(list(routes.values()))
            fetched_at = self._clock_ms()
        except ExchangeError as exc:
            result.failed(exc)
            for pair in routes:
                result.missing[pair] = f"exchange error: {exc.kind}"
            return result
        try:
            self._read_opens(from_an_earlier_hour, pacer, deadline, result, keep_one_turn=False)
        except ExchangeError as exc:  # the hour-old opens still serve; the prices are in hand
            result.failed(exc)
        for pair, key in routes.items():
            if key not in self.opens:
                result.missing[pair] = "not fetched this slot: its rolling 24 h open is not read yet"
            elif key not in raws:
                result.missing[pair] = (
                    "absent from the exchange's answer" if raws else "not fetched this slot"
                )
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
    ) -> None:
        # Before the Ticker request, one turn is kept for it: an open without a price serves nothing.
        cutoff = deadline - (1 / self.requests_per_s if keep_one_turn else 0)
        for key in keys:
            if not pacer.wait_turn(cutoff):
                return
            result.requests += 1
            read_at = self._clock_ms()
            self.opens[key] = Kept(self.client.rolling_open(key, now_ms=read_at), read_at)


class _Skipped(Exception):
    """A request that may not leave in this slot; the message says why."""
