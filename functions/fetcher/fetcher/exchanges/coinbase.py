"""Coinbase Exchange REST (public market data): its protocol, its errors, and the exchange as the
tick uses it.

Coinbase has no batch endpoint: each product costs one ``/products/{id}/ticker`` call for the price
and one ``/products/{id}/stats`` call for the rolling 24 h open/high/low, against a public limit of
about 10 requests a second per IP. Requests are paced under that rate; the stats change slowly and
are kept between slots, refreshed every few minutes, a few at a time.

Over 300 lines: Coinbase's per-product requests, stats refreshes and pacing are one exchange's
concern, kept whole so that adding or changing an exchange touches one module.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from fetcher.exchanges.base import (
    ExchangeError,
    ExchangeSpec,
    FetchResult,
    Limits,
    ListingEntry,
    RateLimitedError,
    change_24h,
    number,
    read_candle_rows,
    short_reason,
)
from fetcher.exchanges.pacing import RATE_SHARE, Kept, PacedExchange
from fetcher.exchanges.transport import Transport
from market_data.candles import Candle
from market_data.clock import now_ms
from market_data.models import Ticker

EXCHANGE = "coinbase"
BASE_URL = "https://api.exchange.coinbase.com"
PRODUCTS_PATH = "/products"
# Coinbase's documented public limit, per IP; the fetcher must keep its per-product calls under it.
PUBLIC_RATE_LIMIT_PER_S = 10
# Coinbase's 429 carries no Retry-After; its limit refills within a second.
DEFAULT_RETRY_AFTER_S = 1
# The only listing status whose products trade; see ``CoinbaseClient.products`` for trading_disabled.
SERVABLE_STATUS = "online"
TRADING_DISABLED_STATUS = "trading_disabled"
STATS_REFRESH_MS = 300_000
MAX_CANDLES = 300  # per request, as Coinbase documents it
CANDLE_GRANULARITIES = {60_000: "60", 300_000: "300", 900_000: "900", 3_600_000: "3600"}
# Backfill's share of the public rate: the tick takes RATE_SHARE of it, backfill one a second.
BACKFILL_GAP_S = 1.0
IN_FLIGHT = 3
# A ticker request per pair at the paced rate; a quarter of the slot is left for the 24 h stats
# refreshes and the answers' time.
SLOT_SHARE_FOR_TICKERS = 0.75

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def _describe(body: Any) -> str | None:
    """Coinbase's ``{"message": ...}``."""
    return str(body.get("message")) if isinstance(body, dict) else None


class CoinbaseClient:
    """Calls Coinbase Exchange over a shared ``httpx.Client`` (created once per container, with timeouts)."""

    name = EXCHANGE

    def __init__(self, http: httpx.Client, base_url: str) -> None:
        self._transport = Transport(
            http, base_url, default_retry_after_s=DEFAULT_RETRY_AFTER_S, describe=_describe
        )

    def products(self) -> dict[str, ListingEntry]:
        """The listing keyed by pair ("BTC/USD"), each pair's product id taken from the listing itself.

        ``status`` is Coinbase's own (online, offline, delisted), except that an online product with
        ``trading_disabled`` reports ``trading_disabled``. Only ``SERVABLE_STATUS`` trades.
        """
        body = self._transport.get(PRODUCTS_PATH)
        if not isinstance(body, list):
            raise ExchangeError("bad_body", f"/products answered {type(body).__name__}, expected a list")
        by_pair: dict[str, ListingEntry] = {}
        for entry in body:
            try:
                status = str(entry["status"])
                if status == SERVABLE_STATUS and entry["trading_disabled"] is not False:
                    status = TRADING_DISABLED_STATUS
                info = ListingEntry(
                    str(entry["id"]),
                    str(entry["base_currency"]),
                    str(entry["quote_currency"]),
                    status,
                    status == SERVABLE_STATUS,
                )
            except (KeyError, TypeError):
                continue  # a malformed entry names no pair we could serve
            by_pair[info.pair] = info
        return by_pair

    def ticker(self, product_id: str) -> dict[str, Any]:
        """The raw ticker of one product: last trade price and size, best bid/ask, 24 h base volume."""
        return self._get_product(product_id, "ticker")

    def stats(self, product_id: str) -> dict[str, Any]:
        """The raw rolling 24 h statistics of one product: open, high, low, last, volume."""
        return self._get_product(product_id, "stats")

    def candles(self, product_id: str, interval_ms: int, start_ms: int, end_ms: int) -> list[Candle]:
        """Closed candles of one product in ``[start_ms, end_ms)``, oldest first: one request, at
        most MAX_CANDLES. Coinbase answers [time (s), low, high, open, close, volume], newest first."""
        params = {
            "granularity": CANDLE_GRANULARITIES[interval_ms],
            "start": _iso(start_ms),
            "end": _iso(end_ms - 1),
        }
        body = self._get_product(product_id, "candles", params, expected=list)
        return read_candle_rows(
            body, (3, 2, 1, 4, 5), time_unit_ms=1000, interval_ms=interval_ms, start_ms=start_ms,
            end_ms=end_ms, where=f"candles of {product_id}",
        )  # fmt: skip

    def _get_product(
        self, product_id: str, endpoint: str, params: dict[str, str] | None = None, *, expected: type = dict
    ) -> Any:
        # Quoted whole, so a product id can never reach another path.
        path = f"{PRODUCTS_PATH}/{quote(product_id, safe='')}/{endpoint}"

        def not_listed(status: int, body: Any) -> ExchangeError | None:
            if status != 404:
                return None
            words = _describe(body) if isinstance(body, dict) else None
            message = f"{path}: HTTP 404: {EXCHANGE} does not list {product_id}" + (
                f": {words}" if words else ""
            )
            return ExchangeError("not_found", message, status=404)

        body = self._transport.get(path, params, refine=not_listed)
        if not isinstance(body, expected):
            raise ExchangeError(
                "bad_body", f"{path} answered {type(body).__name__}, expected {expected.__name__}"
            )
        return body


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch_ms(iso_time: str) -> int:
    """``2024-03-13T11:10:41.270099Z`` as ms since the epoch; a time without a zone is refused."""
    moment = datetime.fromisoformat(iso_time)
    if moment.tzinfo is None:
        raise ValueError(f"time {iso_time!r} has no time zone")
    return (moment - _EPOCH) // _ONE_MS  # exact integer arithmetic, no float rounding


def parse_ticker(
    ticker_raw: dict[str, Any], stats_raw: dict[str, Any], pair: str, *, product_id: str, fetched_at: int
) -> Ticker:
    """Turn one product's raw ticker and 24 h stats into a validated Ticker.

    Raises ``ValueError`` naming the pair when a field is missing, not a number or not a time, and
    pydantic's ``ValidationError`` (also a ``ValueError``) when a value is out of range.

    ``product_id`` is the listing's id for ``pair`` (``ListingEntry.symbol``): the ticker body does
    not name its product, and an id is never guessed from a pair's spelling.

    - ``timestamp`` is ``fetched_at``. The ticker's ``time`` is the last trade's: it says how long
      the market has been quiet, not how current the figures are (the bid, ask and volume are as of
      the request). A pair that trades once a minute would otherwise look stale while its figures
      are seconds old, and one quiet for a day would be refused as a day-old ticker. The time is
      still read, so a ticker without a valid one is refused as malformed.
    - ``volume`` is the ticker's 24 h volume in the base currency.
    - ``quoteVolume`` is ``volume * price``, an estimate: Coinbase publishes no quote volume, and
      the day's trades were not all at the last price.
    - ``change24h`` is measured from the stats' ``open``, the price 24 hours ago on a rolling window,
      so it means what Binance's does. ``high24h``/``low24h`` are the stats' own, widened to the
      last price: the stats are kept for minutes, and a price past them is the day's new extreme.
    """
    try:
        price = number(ticker_raw["price"])
        volume = number(ticker_raw["volume"])
        high, low = number(stats_raw["high"]), number(stats_raw["low"])
        if high >= low:  # the stats are kept for minutes: a price past them is the day's new extreme
            high, low = max(high, price), min(low, price)
        _epoch_ms(str(ticker_raw["time"]))  # a ticker without a valid time is malformed
        values = {
            "pair": pair,
            "price": price,
            "volume": volume,
            "quoteVolume": volume * price,
            "timestamp": fetched_at,
            "fetchedAt": fetched_at,
            "change24h": change_24h(price, number(stats_raw["open"])),
            "high24h": high,
            "low24h": low,
            "exchange": EXCHANGE,
            "symbol": product_id,
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed {EXCHANGE} ticker for {pair}: {type(exc).__name__} {exc}") from None
    return Ticker.model_validate(values)


class CoinbaseExchange(PacedExchange):
    """Coinbase as the tick uses it: a ticker request per product, paced; 24 h stats kept."""

    name = EXCHANGE

    def __init__(
        self,
        client: CoinbaseClient,
        *,
        slot_ms: int = 4_000,
        requests_per_s: float = PUBLIC_RATE_LIMIT_PER_S * RATE_SHARE,
        stats_refresh_ms: int = STATS_REFRESH_MS,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        super().__init__(requests_per_s, clock_ms)
        self.client = client
        self.slot_ms = slot_ms
        self.stats_refresh_ms = stats_refresh_ms
        self.served_at: dict[str, int] = {}  # product id -> when its last ticker came back

    max_candles = MAX_CANDLES
    backfill_gap_s = BACKFILL_GAP_S

    def candles(self, symbol: str, interval_ms: int, start_ms: int, end_ms: int) -> list[Candle]:
        return self.client.candles(symbol, interval_ms, start_ms, end_ms)

    def candle_reach_ms(self, interval_ms: int) -> int | None:
        return None

    def _read_listing(self) -> dict[str, ListingEntry]:
        return self.client.products()

    def limits(self, now: int) -> Limits:
        return Limits(pairs_per_slot=self.capacity(self.slot_ms / 1000))

    def capacity(self, slot_s: float) -> int:
        """Pairs one slot can fetch: a ticker request each at the paced rate."""
        return max(int(self.requests_per_s * slot_s * SLOT_SHARE_FOR_TICKERS), 1)

    @staticmethod
    def accept_kept(value: Any) -> bool:
        return isinstance(value, dict) and all(name in value for name in ("open", "high", "low"))

    def fetch(self, routes: Mapping[str, str], *, deadline: float) -> FetchResult:
        result = FetchResult(self.name)
        pacer, stop, lock, stats = self.pacer, threading.Event(), threading.Lock(), self.kept
        now = self._clock_ms()
        due = sorted(
            (product for product in routes.values() if self._stats_due(product, now)),
            key=lambda product: stats[product].read_at_ms if product in stats else -1,
        )
        # Stats that are merely due wait while this slot's requests are needed for tickers.
        budget = int(max(deadline - time.monotonic(), 0) * self.requests_per_s) - len(routes)
        refresh = {p for p in due if p not in stats} | set(due[: max(budget, 0)])

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
                stats[product] = Kept(self.client.stats(product), self._clock_ms())
            except _Skipped:
                if product not in stats:
                    raise
            except ExchangeError as exc:
                if isinstance(exc, RateLimitedError):
                    stop.set()
                with lock:
                    result.failed(exc)
                if product not in stats:
                    raise _Skipped(f"exchange error: {exc.kind}", failed=True) from exc

        def fetch_pair(pair: str, product: str) -> None:
            try:
                if product in refresh:
                    refresh_stats(product)
                take_turn()
                raw = self.client.ticker(product)
                fetched_at = self._clock_ms()
                ticker = parse_ticker(
                    raw, stats[product].value, pair, product_id=product, fetched_at=fetched_at
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
                    result.invalid[pair] = short_reason(exc)

        # The longest unserved first: when the slot's rate runs out, the pairs left over are served
        # first in the next slot, rather than the same ones missing every slot.
        order = sorted(routes.items(), key=lambda item: self.served_at.get(item[1], 0))
        started = time.monotonic()
        with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="coinbase") as pool:
            list(pool.map(lambda item: fetch_pair(*item), order))
        result.fetch_ms = round((time.monotonic() - started) * 1000)
        return result

    def _stats_due(self, product: str, now: int) -> bool:
        kept = self.kept.get(product)
        return kept is None or now - kept.read_at_ms >= self.stats_refresh_ms


class _Skipped(Exception):
    """A request that may not leave in this slot (``failed``: because a needed one failed); the
    message says why."""

    def __init__(self, message: str, *, failed: bool = False) -> None:
        super().__init__(message)
        self.failed = failed


SPEC = ExchangeSpec(
    EXCHANGE,
    BASE_URL,
    lambda context: CoinbaseExchange(
        CoinbaseClient(context.http, context.base_url), slot_ms=context.settings.fetch_interval_ms
    ),
)
