"""Kraken public REST adapter (market data): its listing, batched tickers, rolling open and errors.

Kraken differs from Binance in ways the rest of the service must not see:

- Asset names: ``XBT`` is BTC, ``XDG`` is DOGE, and legacy assets carry a one-letter class prefix
  (``XXBT``, ``XETH``, ``ZUSD``). Pairs are mapped to the service's ``BASE/QUOTE`` only through the
  AssetPairs listing, never by building a Kraken name for a pair it does not list.
- Errors arrive in the body (``{"error": ["EQuery:Unknown asset pair"], "result": {}}``), usually with
  HTTP 200, so the status code alone says little.
- The ticker has no timestamp and its ``o`` is today's midnight-UTC open. ``change24h`` must mean a
  rolling 24 h change as Binance's does, so the open 24 h ago is read from hourly candles
  (:meth:`KrakenClient.rolling_open`); it moves slowly, so callers may refresh it less often than prices.

Only the fetcher imports this module; the read path never reaches an exchange. Exceptions are the Binance
adapter's, so the fetcher counts every exchange's failures by the same kinds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from fetcher.exchange import ExchangeError, RateLimitedError, SymbolInfo
from market_data.models import Ticker

EXCHANGE = "kraken"
ASSET_PAIRS_PATH = "/0/public/AssetPairs"
TICKER_PATH = "/0/public/Ticker"
OHLC_PATH = "/0/public/OHLC"

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
        self._http = http
        self._base_url = base_url.rstrip("/")

    def asset_pairs(self) -> dict[str, SymbolInfo]:
        """Every listed pair keyed by service pair; ``symbol`` is the canonical key Ticker answers under."""
        result = self._get(ASSET_PAIRS_PATH, {})
        by_pair: dict[str, SymbolInfo] = {}
        for key, entry in result.items():
            # Keys with a dot (the old ".d" dark-pool books) are not public markets with a ticker.
            if not isinstance(entry, dict) or "." in key:
                continue
            pair = pair_from_listing(entry)
            if pair is None or pair in by_pair:  # malformed, or a second book for the same pair
                continue
            base, quote = pair.split("/")
            by_pair[pair] = SymbolInfo(key, base, quote, str(entry.get("status", "")))
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
                price = float(candles[0][1])
            else:
                index = earlier[-1]
                # Candles are [time, open, high, low, close, vwap, volume, count].
                price = float(candles[index][1] if times[index] == target_s else candles[index][4])
        except (IndexError, TypeError, ValueError) as exc:
            raise ExchangeError("bad_body", f"{OHLC_PATH}: malformed candle for {name}: {exc}") from None
        if not (math.isfinite(price) and price > 0):
            raise ExchangeError("bad_body", f"{OHLC_PATH}: open {price} for {name} is not a price")
        return price

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        """The ``result`` object of one call, or the ExchangeError its status or error list means."""
        try:
            response = self._http.get(self._base_url + path, params=params)
        except httpx.TimeoutException as exc:
            raise ExchangeError("timeout", f"{path}: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise ExchangeError("network", f"{path}: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        errors = _errors(body)
        if status == 429 or RATE_LIMIT_ERRORS.intersection(errors):
            message = f"{path}: HTTP {status} {', '.join(errors) or response.text[:200]}"
            raise RateLimitedError(429, _retry_after(response), message)
        if status == 451:  # this location may not be served: no request from here will succeed
            raise ExchangeError("restricted_location", f"{path}: HTTP 451", status=451)
        if status >= 500:  # the CDN answers these, often as HTML
            raise ExchangeError("http_5xx", f"{path}: HTTP {status}", status=status)
        if body is None:
            raise ExchangeError("bad_body", f"{path}: HTTP {status}, body is not JSON", status=status)
        if errors:
            message = f"{path}: {', '.join(errors)}"
            if UNKNOWN_PAIR_ERROR in errors:  # one unknown name fails the whole request
                raise ExchangeError("unknown_pair", message, status=status)
            if any(error.startswith(SERVICE_ERROR_PREFIX) for error in errors):
                raise ExchangeError("unavailable", message, status=status)
            raise ExchangeError("api_error", message, status=status)
        if status >= 400:
            raise ExchangeError("http_4xx", f"{path}: HTTP {status}", status=status)
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, dict):
            raise ExchangeError("bad_body", f"{path}: no result object", status=status)
        return result


def _errors(body: Any) -> list[str]:
    """The error entries of a body. Entries starting with W are warnings and do not fail a call."""
    entries = body.get("error") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        return []
    return [str(entry) for entry in entries if not str(entry).startswith("W")]


def _retry_after(response: httpx.Response) -> int:
    value = response.headers.get("retry-after", "")
    return max(1, int(value)) if value.isdigit() else DEFAULT_RETRY_AFTER_S


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
            "change24h": round((price - open_24h) / open_24h * 100, 4)
            if open_24h > 0 and math.isfinite(open_24h)
            else math.nan,
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
    return float(values[index])
