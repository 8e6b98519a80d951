"""Kraken public REST (market data): its listing, batched tickers, rolling open and errors, and
the exchange as the tick uses it.

Kraken differs from Binance in ways the rest of the service must not see:

- Asset names: ``XBT`` is BTC, ``XDG`` is DOGE, and legacy assets carry a one-letter class prefix
  (``XXBT``, ``XETH``, ``ZUSD``). Pairs are mapped to the service's ``BASE/QUOTE`` only through the
  AssetPairs listing, never by building a Kraken name for a pair it does not list.
- Errors arrive in the body (``{"error": ["EQuery:Unknown asset pair"], "result": {}}``), usually with
  HTTP 200, so the status code alone says little.
- The ticker has no timestamp and its ``o`` is today's midnight-UTC open. ``change24h`` must mean a
  rolling 24 h change as Binance's does, so the open 24 h ago is read from hourly candles
  (:meth:`KrakenClient.rolling_open`); it moves slowly, so callers may refresh it less often than prices.

Every pair goes in one Ticker request, but Kraken allows about one request a second: requests are
paced, and each pair's rolling 24 h open is kept between slots and read again once an hour.

Over 300 lines: Kraken's asset names, body errors, rolling opens and pacing belong together; the
module is the whole exchange so that changing it touches nothing else.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from pydantic import ValidationError

from fetcher.exchanges.base import (
    ExchangeError,
    ExchangeSpec,
    FetchResult,
    ListingEntry,
    RateLimitedError,
    change_24h,
    number,
    read_candle_rows,
    short_reason,
)
from fetcher.exchanges.pacing import RATE_SHARE, Kept, PacedExchange, Pacer
from fetcher.exchanges.transport import Transport
from market_data.candles import Candle
from market_data.clock import now_ms
from market_data.models import Ticker

EXCHANGE = "kraken"
BASE_URL = "https://api.kraken.com"
ASSET_PAIRS_PATH = "/0/public/AssetPairs"
TICKER_PATH = "/0/public/Ticker"
OHLC_PATH = "/0/public/OHLC"
MAX_CANDLES = 720  # Kraken keeps the last 720 of each interval, whatever ``since`` asks
OHLC_INTERVALS = {60_000: "1", 300_000: "5", 900_000: "15", 3_600_000: "60"}
# Backfill's share of the public rate: the tick takes RATE_SHARE of one a second; this is a fifth.
BACKFILL_GAP_S = 5.0

# Kraken's documented allowance for public endpoints is about one request a second per IP.
PUBLIC_REQUESTS_PER_S = 1.0
# Kraken sends no Retry-After with its rate-limit errors; waiting a few seconds lets its counter drain.
DEFAULT_RETRY_AFTER_S = 5
# Only this status accepts orders of every kind; cancel_only, post_only, limit_only, reduce_only and
# maintenance are markets whose last price may not move like a traded one.
SERVABLE_STATUS = "online"

UNKNOWN_PAIR_ERROR = "EQuery:Unknown asset pair"
RATE_LIMIT_ERRORS = frozenset({"EGeneral:Too many requests", "EAPI:Rate limit exceeded"})
SERVICE_ERROR_PREFIX = "EService:"  # EService:Unavailable, EService:Busy: Kraken itself is struggling

# Work that can wait a slot (refreshing a figure that still serves) stops this long before the
# slot's deadline, so a slow answer cannot push the slot's writes into the next slot.
OPTIONAL_WORK_MARGIN_S = 1.0
# A rolling open whose read failed is asked again after this long.
OPEN_RETRY_MS = 60_000

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# Kraken's own names for assets whose usual symbol differs, after any class prefix is removed.
ASSET_ALIASES = {"XBT": "BTC", "XDG": "DOGE"}


def service_asset(kraken_asset: str, *, prefixed: bool) -> str:
    """The service's name for a Kraken asset: ``XXBT`` -> BTC, ``ZUSD`` -> USD, ``XDG`` -> DOGE.

    ``prefixed`` says the name comes from the listing's ``base``/``quote`` fields, where legacy assets
    carry an X (crypto) or Z (fiat) class prefix on a three-letter name; ``wsname`` never has one.
    """
    name = kraken_asset.upper()
    if prefixed and len(name) == 4 and name[0] in "XZ":
        name = name[1:]
    return ASSET_ALIASES.get(name, name)


def pair_from_listing(entry: dict[str, Any]) -> str | None:
    """The service pair (``BTC/USD``) for one AssetPairs entry, or None when the entry names none."""
    wsname = entry.get("wsname")
    if isinstance(wsname, str) and wsname.count("/") == 1:
        names: list[Any] = wsname.split("/")
        prefixed = False
    else:  # older entries lack wsname: fall back to base/quote and the prefix rule
        names = [entry.get("base"), entry.get("quote")]
        prefixed = True
    if not all(isinstance(name, str) and name for name in names):
        return None
    base, quote = names
    return f"{service_asset(base, prefixed=prefixed)}/{service_asset(quote, prefixed=prefixed)}"


class KrakenClient:
    """Calls Kraken over a shared ``httpx.Client`` (created once per container, with timeouts)."""

    name = EXCHANGE

    def __init__(self, http: httpx.Client, base_url: str) -> None:
        self._transport = Transport(
            http,
            base_url,
            default_retry_after_s=DEFAULT_RETRY_AFTER_S,
            describe=lambda body: ", ".join(_errors(body)) or None,
            rate_limited_body=lambda body: bool(RATE_LIMIT_ERRORS.intersection(_errors(body))),
        )

    def asset_pairs(self) -> dict[str, ListingEntry]:
        """Every listed pair keyed by service pair; ``symbol`` is the canonical key Ticker answers under."""
        result = self._get(ASSET_PAIRS_PATH, {})
        by_pair: dict[str, ListingEntry] = {}
        for key, entry in result.items():
            # Keys with a dot (the old ".d" dark-pool books) are not public markets with a ticker.
            if not isinstance(entry, dict) or "." in key:
                continue
            pair = pair_from_listing(entry)
            if pair is None or pair in by_pair:  # malformed, or a second book for the same pair
                continue
            base, quote = pair.split("/")
            status = str(entry.get("status", ""))
            by_pair[pair] = ListingEntry(key, base, quote, status, status == SERVABLE_STATUS)
        return by_pair

    def tickers(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Raw tickers for ``names`` (canonical keys or altnames) in one request, keyed by canonical key."""
        result = self._get(TICKER_PATH, {"pair": ",".join(names)})
        if not all(isinstance(entry, dict) for entry in result.values()):
            raise ExchangeError("bad_body", f"{TICKER_PATH}: a ticker entry is not an object")
        return result

    def rolling_open(self, name: str, *, now_ms: int) -> float:
        """The price 24 h ago: the open of the hourly candle starting 24 h before the current hour.

        An hour without trades may be missing from the candles; then the close of the latest candle
        before it is the price at that time. A pair listed less than a day ago has no such candle, and
        its first open stands in, as Binance's openPrice is a new listing's first trade.
        """
        result = self._get(OHLC_PATH, {"pair": name, "interval": "60"})
        candles = next((value for key, value in result.items() if key != "last"), None)
        if not isinstance(candles, list) or not candles:
            raise ExchangeError("bad_body", f"{OHLC_PATH}: no candles for {name}")
        target_s = (now_ms // HOUR_MS * HOUR_MS - DAY_MS) // 1000
        try:
            times = [int(candle[0]) for candle in candles]
            earlier = [index for index, start in enumerate(times) if start <= target_s]
            if not earlier:
                price = number(candles[0][1])
            else:
                index = earlier[-1]
                # Candles are [time, open, high, low, close, vwap, volume, count].
                price = number(candles[index][1] if times[index] == target_s else candles[index][4])
        except (IndexError, TypeError, ValueError) as exc:
            raise ExchangeError("bad_body", f"{OHLC_PATH}: malformed candle for {name}: {exc}") from None
        if not (math.isfinite(price) and price > 0):
            raise ExchangeError("bad_body", f"{OHLC_PATH}: open {price} for {name} is not a price")
        return price

    def candles(self, name: str, interval_ms: int, start_ms: int, end_ms: int) -> list[Candle]:
        """Closed candles of one pair in ``[start_ms, end_ms)`` (of the last MAX_CANDLES), oldest
        first. Kraken answers [time (s), open, high, low, close, vwap, volume, count], the last one
        the interval still open."""
        since = str(max(start_ms - interval_ms, 0) // 1000)  # ``since`` is exclusive
        result = self._get(OHLC_PATH, {"pair": name, "interval": OHLC_INTERVALS[interval_ms], "since": since})
        rows = next((value for key, value in result.items() if key != "last"), None)
        if not isinstance(rows, list):
            raise ExchangeError("bad_body", f"{OHLC_PATH}: no candles for {name}")
        return read_candle_rows(
            rows, (1, 2, 3, 4, 6), time_unit_ms=1000, interval_ms=interval_ms, start_ms=start_ms,
            end_ms=end_ms, where=f"{OHLC_PATH} for {name}",
        )  # fmt: skip

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        """The ``result`` object of one call, or the ExchangeError its status or error list means."""
        body = self._transport.get(path, params, refine=_body_errors(path))
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, dict):
            raise ExchangeError("bad_body", f"{path}: no result object")
        return result


def _body_errors(path: str) -> Callable[[int, Any], ExchangeError | None]:
    """Kraken's errors arrive in the body, usually with HTTP 200."""

    def refine(status: int, body: Any) -> ExchangeError | None:
        errors = _errors(body)
        if not errors:
            return None
        message = f"{path}: {', '.join(errors)}"
        if UNKNOWN_PAIR_ERROR in errors:  # one unknown name fails the whole request
            return ExchangeError("unknown_pair", message, status=status)
        if any(error.startswith(SERVICE_ERROR_PREFIX) for error in errors):
            return ExchangeError("unavailable", message, status=status)
        return ExchangeError("api_error", message, status=status)

    return refine


def _errors(body: Any) -> list[str]:
    """The error entries of a body. Entries starting with W are warnings and do not fail a call."""
    entries = body.get("error") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        return []
    return [str(entry) for entry in entries if not str(entry).startswith("W")]


def parse_ticker(raw: dict[str, Any], pair: str, *, symbol: str, fetched_at: int, open_24h: float) -> Ticker:
    """Turn one raw Kraken ticker into a validated Ticker (raises ``ValueError`` when it is bad).

    ``symbol`` is the canonical key the ticker was answered under (Kraken's entry does not repeat it).
    The fields use Kraken's last-24-hours element (index 1), never "today" (index 0):

    - ``timestamp`` is ``fetched_at``: Kraken gives no time for a ticker, so the fetch time stands in;
    - ``quoteVolume`` is the 24 h VWAP times the 24 h volume (Kraken reports no quote volume);
    - ``change24h`` is measured from ``open_24h`` (:meth:`KrakenClient.rolling_open`), not from ``o``,
      today's midnight-UTC open, so it means what Binance's rolling figure means.
    """
    try:
        price = _number(raw, "c", 0)
        volume = _number(raw, "v", 1)
        values = {
            "pair": pair,
            "price": price,
            "volume": volume,
            "quoteVolume": _number(raw, "p", 1) * volume,
            "timestamp": fetched_at,
            "fetchedAt": fetched_at,
            "change24h": change_24h(price, open_24h),
            "high24h": _number(raw, "h", 1),
            "low24h": _number(raw, "l", 1),
            "exchange": EXCHANGE,
            "symbol": symbol,
        }
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed ticker for {pair}: {type(exc).__name__} {exc}") from None
    return Ticker.model_validate(values)


def _number(raw: dict[str, Any], key: str, index: int) -> float:
    """Element ``index`` of the list under ``key``; a string there would index into its characters."""
    values = raw[key]
    if not isinstance(values, list):
        raise TypeError(f"{key} is {type(values).__name__}, expected a list")
    return number(values[index])


class KrakenExchange(PacedExchange):
    """Kraken as the tick uses it: every pair in one Ticker request; each pair's rolling 24 h open
    (kept between slots, key: the pair's canonical key) once an hour."""

    name = EXCHANGE

    def __init__(
        self,
        client: KrakenClient,
        *,
        requests_per_s: float = PUBLIC_REQUESTS_PER_S * RATE_SHARE,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        super().__init__(requests_per_s, clock_ms)
        self.client = client
        self.opens = self.kept
        self.open_failures: dict[str, tuple[int, str]] = {}  # key -> when its open last failed, why

    max_candles = MAX_CANDLES
    backfill_gap_s = BACKFILL_GAP_S

    def candles(self, symbol: str, interval_ms: int, start_ms: int, end_ms: int) -> list[Candle]:
        return self.client.candles(symbol, interval_ms, start_ms, end_ms)

    def candle_reach_ms(self, interval_ms: int) -> int | None:
        return MAX_CANDLES * interval_ms

    def _read_listing(self) -> dict[str, ListingEntry]:
        return self.client.asset_pairs()

    @staticmethod
    def accept_kept(value: Any) -> bool:
        return isinstance(value, int | float) and math.isfinite(value) and value > 0

    def fetch(self, routes: Mapping[str, str], *, deadline: float) -> FetchResult:
        result = FetchResult(self.name)
        pacer = self.pacer
        hour = self._clock_ms() // HOUR_MS
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
            if key in self.opens and self.opens[key].read_at_ms // HOUR_MS < hour
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
                    result.tickers[pair] = parse_ticker(
                        raws[key], pair, symbol=key, fetched_at=fetched_at, open_24h=self.opens[key].value
                    )
                except (ValidationError, ValueError) as exc:
                    result.invalid[pair] = short_reason(exc)
        return result

    def _read_opens(
        self, keys: list[str], pacer: Pacer, deadline: float, result: FetchResult, *, keep_one_turn: bool
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


SPEC = ExchangeSpec(
    EXCHANGE, BASE_URL, lambda context: KrakenExchange(KrakenClient(context.http, context.base_url))
)
