"""What every exchange shares: its errors as operators count them, its listing entries, what one
slot's fetch returns, its limits, the 24 h change formula, and the protocol the tick asks of it.

Each exchange module (``binance.py``, ``coinbase.py``, ``kraken.py``) speaks one protocol and maps
it to these; only the fetcher imports them, and the read path never reaches an exchange.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from market_data.candles import EXCHANGE as EXCHANGE_SOURCE
from market_data.candles import Candle
from market_data.clock import now_ms
from market_data.models import Ticker

if TYPE_CHECKING:
    import httpx

    from market_data.config import Settings


class ExchangeError(Exception):
    """A failed exchange call; ``kind`` is what operators count (timeout, http_5xx, bad_body, ...)."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        advice: str | None = None,
        unreachable: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.advice = advice  # what an operator can do about it, where the exchange says more than its kind
        # Why no connection could be made (name resolution, refused, connect timeout): the
        # exchange never saw the request, and the cause is this side's network, not the exchange.
        self.unreachable = unreachable


class RateLimitedError(ExchangeError):
    """429 (too many requests) or 418 (IP banned): no call may be made before ``retry_after_s``."""

    def __init__(self, status: int, retry_after_s: int, message: str) -> None:
        super().__init__("rate_limited" if status == 429 else "banned", message, status=status)
        self.retry_after_s = retry_after_s


# Error kinds that mean the exchange's listing changed under us (a name it no longer knows): the
# listing is read again at the next tick, so the name is not asked for again and again.
LISTING_CHANGED_KINDS = frozenset({"invalid_symbol", "unknown_pair", "not_found"})


@dataclass(frozen=True)
class ListingEntry:
    """One pair as an exchange lists it: its own name for it, and whether it trades now.

    ``status`` is the exchange's own word (TRADING, online, cancel_only, ...), kept for the reasons
    users read; ``trading`` is the one thing the service decides on, set by the exchange's adapter.
    """

    symbol: str
    base: str
    quote: str
    status: str
    trading: bool

    @property
    def pair(self) -> str:
        return f"{self.base}/{self.quote}"


@dataclass(frozen=True)
class WeightBudget:
    """An exchange that counts request weight per window (Binance): what it reported used, and the
    share of its limit this service allows itself."""

    used: int  # the exchange's count for the address: other clients behind it included
    reported_at: int  # ms: when the exchange said so
    budget: int
    window_ms: int
    cost: Callable[[int], int]  # the weight of one slot's requests for n pairs
    limit: int = 0  # the exchange's own limit per window, of which ``budget`` is our share
    # What this container's own requests have cost since it started, as the exchange charges them:
    # a running total, so a tick's own weight is its difference across the tick.
    spent: int = 0

    def refusal(self, pairs: int, now: int) -> str | None:
        """Why a slot fetching ``pairs`` must not call the exchange, when it would pass the budget.

        Slowing down before the limit costs a tick or two; running into it costs a 429 and,
        repeated, an IP ban."""
        if self.reported_at // self.window_ms != now // self.window_ms:
            return None  # nothing reported this window: the count has started again
        planned = self.cost(pairs)
        if self.used + planned <= self.budget:
            return None
        return (
            f"weight budget: {self.used} of {self.budget} used this minute, this tick needs {planned}; "
            "resuming next minute"
        )

    def window_end(self, now: int) -> int:
        return (now // self.window_ms + 1) * self.window_ms


@dataclass(frozen=True)
class Limits:
    """What one exchange can take in a slot, as it stands now."""

    pairs_per_slot: int | None = None  # a request per pair: beyond this, pairs go elsewhere first
    weight: WeightBudget | None = None  # a budget that a slot's share must fit, or the exchange pauses

    @property
    def used_weight(self) -> int | None:
        return self.weight.used if self.weight is not None else None


@dataclass
class FetchResult:
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

    def merge(self, other: FetchResult) -> None:
        """Add a later part of the same exchange's tick (its fetch after its listing read)."""
        self.tickers.update(other.tickers)
        self.missing.update(other.missing)
        self.invalid.update(other.invalid)
        self.errors.extend(other.errors)
        self.requests += other.requests
        self.rate_limited = self.rate_limited or other.rate_limited
        self.deferred |= other.deferred
        self.rejected.extend(other.rejected)
        self.fetch_ms = other.fetch_ms if other.fetch_ms is not None else self.fetch_ms

    @property
    def listing_changed(self) -> bool:
        return bool(self.rejected) or any(error.kind in LISTING_CHANGED_KINDS for error in self.errors)

    def failed_pairs(self, routed: Iterable[str]) -> set[str]:
        """Routed pairs that did not come back for a reason of this exchange's (not deferred)."""
        return {pair for pair in routed if pair not in self.tickers and pair not in self.deferred}


class Exchange(Protocol):
    """What the tick asks of every exchange."""

    name: str

    def listing(self) -> dict[str, ListingEntry]:
        """Every pair the exchange lists, by pair; raises ExchangeError."""
        ...

    def fetch(self, routes: Mapping[str, str], *, deadline: float) -> FetchResult:
        """Tickers of ``routes`` (pair -> the exchange's own name); no request after ``deadline``."""
        ...

    def limits(self, now: int) -> Limits: ...


@dataclass(frozen=True)
class BuildContext:
    """What an exchange is built from, once per container."""

    http: httpx.Client  # shared by every exchange: one pool, with timeouts
    base_url: str
    settings: Settings
    batches: ThreadPoolExecutor  # bounds the batch requests in flight across slots


@dataclass(frozen=True)
class ExchangeSpec:
    """An exchange the fetcher can speak to: its name in EXCHANGES, its own API, how to build it."""

    name: str
    base_url: str  # its public API; <NAME>_API_BASE_URL points the fetcher elsewhere
    build: Callable[[BuildContext], Exchange]


class CandleSource(Protocol):
    """An exchange that serves its own candles (backfill asks it for a new pair's history)."""

    name: str
    max_candles: int  # candles one request answers at most
    backfill_gap_s: float  # between two backfill requests: a share of the exchange's rate left over

    def candles(self, symbol: str, interval_ms: int, start_ms: int, end_ms: int) -> list[Candle]:
        """Closed candles of ``symbol`` with times in ``[start_ms, end_ms)``, oldest first, in one
        request; raises ExchangeError."""
        ...

    def candle_reach_ms(self, interval_ms: int) -> int | None:
        """How far back the exchange serves candles of ``interval_ms`` (None: as far as asked)."""
        ...


def exchange_candle(
    time_ms: int,
    open_: object,
    high: object,
    low: object,
    close: object,
    volume: object,
    *,
    interval_ms: int,
    now: int,
) -> Candle | None:
    """One of an exchange's candles as this service keeps it (``source: exchange``, the exchange's
    own volume); None for the interval still open. Raises TypeError or ValueError for a malformed one."""
    if time_ms + interval_ms > now:
        return None
    prices = [number(value) for value in (open_, high, low, close)]
    if (
        not all(math.isfinite(price) and price > 0 for price in prices)
        or min(prices) != prices[2]
        or max(prices) != prices[1]
    ):
        raise ValueError(f"not a candle: open, high, low, close {prices}")
    open_price, high_price, low_price, close_price = prices
    return Candle(time_ms, open_price, high_price, low_price, close_price, number(volume), 0, EXCHANGE_SOURCE)


def read_candle_rows(
    rows: Iterable[Any],
    columns: tuple[int, int, int, int, int],
    *,
    time_unit_ms: int,
    interval_ms: int,
    start_ms: int,
    end_ms: int,
    where: str,
) -> list[Candle]:
    """An exchange's candle rows (its time first, in ``time_unit_ms``; ``columns``: where open,
    high, low, close and volume are) as closed candles in ``[start_ms, end_ms)``, oldest first.
    A malformed row fails the whole answer, naming ``where``."""
    now, found = now_ms(), []
    try:
        for row in rows:
            time_ms = int(row[0]) * time_unit_ms
            values = [row[index] for index in columns]
            candle = exchange_candle(time_ms, *values, interval_ms=interval_ms, now=now)
            if candle is not None and start_ms <= time_ms < end_ms:
                found.append(candle)
    except (IndexError, TypeError, ValueError) as exc:
        raise ExchangeError("bad_body", f"{where}: malformed candle: {exc}") from None
    return sorted(found, key=lambda candle: candle.time)


def change_24h(price: float, open_price: float) -> float:
    """The rolling 24 h change in percent; NaN (refused by Ticker's validation, naming change24h)
    when the open is not a price."""
    if open_price > 0 and math.isfinite(open_price):
        return round((price - open_price) / open_price * 100, 4)
    return math.nan


def short_reason(exc: Exception) -> str:
    """``field: message`` of a refused ticker's first problem; the field is what operators count.
    A check across fields names its field in its error's type, or is the whole ``ticker``'s."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        across = "ticker" if first["type"] in ("value_error", "assertion_error") else first["type"]
        where = ".".join(str(part) for part in first["loc"]) or across
        return f"{where}: {first['msg']}"
    return f"malformed: {exc}"  # a field missing or not a number: counted as one kind


def number(value: object) -> float:
    """An exchange's number (they send strings, or JSON numbers): never a boolean, which Python
    would read as 0 or 1, nor anything else that is not one. Raises TypeError or ValueError."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError(f"{value!r} is not a number")
    return float(value)
