"""Coinbase Exchange REST adapter (public market data): its protocol, its errors, its rate.

Coinbase has no batch endpoint: each product costs one ``/products/{id}/ticker`` call for the price
and one ``/products/{id}/stats`` call for the rolling 24 h open/high/low, against a public limit of
about 10 requests a second per IP. This module only speaks the protocol; how often to call it is
the fetcher's business. Only the fetcher imports it; the read path never reaches an exchange.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import orjson

# The meaning of a failed call is the same whichever exchange failed, so the kinds operators count
# (timeout, http_5xx, rate_limited, ...) come from one place.
from fetcher.exchange import ExchangeError, RateLimitedError, SymbolInfo, json_body
from market_data.models import Ticker

EXCHANGE = "coinbase"
PRODUCTS_PATH = "/products"
# Coinbase's documented public limit, per IP; the fetcher must keep its per-product calls under it.
PUBLIC_RATE_LIMIT_PER_S = 10
# Coinbase's 429 carries no Retry-After; its limit refills within a second.
DEFAULT_RETRY_AFTER_S = 1
# The only listing status whose products trade; see ``CoinbaseClient.products`` for trading_disabled.
SERVABLE_STATUS = "online"
TRADING_DISABLED_STATUS = "trading_disabled"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


class CoinbaseClient:
    """Calls Coinbase Exchange over a shared ``httpx.Client`` (created once per container, with timeouts)."""

    name = EXCHANGE

    def __init__(self, http: httpx.Client, base_url: str) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")

    def products(self) -> dict[str, SymbolInfo]:
        """The listing keyed by pair ("BTC/USD"), each pair's product id taken from the listing itself.

        ``status`` is Coinbase's own (online, offline, delisted), except that an online product with
        ``trading_disabled`` reports ``trading_disabled``: one field then says whether the pair can be
        served, as Binance's TRADING does. Only ``SERVABLE_STATUS`` is servable.
        """
        body = self._get(PRODUCTS_PATH)
        if not isinstance(body, list):
            raise ExchangeError("bad_body", f"/products answered {type(body).__name__}, expected a list")
        by_pair: dict[str, SymbolInfo] = {}
        for entry in body:
            try:
                status = str(entry["status"])
                if status == SERVABLE_STATUS and entry["trading_disabled"] is not False:
                    status = TRADING_DISABLED_STATUS
                info = SymbolInfo(
                    str(entry["id"]), str(entry["base_currency"]), str(entry["quote_currency"]), status
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

    def _get_product(self, product_id: str, endpoint: str) -> dict[str, Any]:
        # Quoted whole, so a product id can never reach another path.
        path = f"{PRODUCTS_PATH}/{quote(product_id, safe='')}/{endpoint}"
        body = self._get(path, product_id=product_id)
        if not isinstance(body, dict):
            raise ExchangeError("bad_body", f"{path} answered {type(body).__name__}, expected an object")
        return body

    def _get(self, path: str, *, product_id: str | None = None) -> Any:
        try:
            response = self._http.get(self._base_url + path)
        except httpx.TimeoutException as exc:
            raise ExchangeError("timeout", f"{path}: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise ExchangeError("network", f"{path}: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status == 429:
            raise RateLimitedError(429, DEFAULT_RETRY_AFTER_S, _error_message(response))
        if status == 451:  # this location may not be served: no request from here will succeed
            message = f"{path}: HTTP 451 {_error_message(response)}"
            raise ExchangeError("restricted_location", message, status=451)
        if status == 404 and product_id is not None:
            message = f"{EXCHANGE} does not list {product_id}: {_error_message(response)}"
            raise ExchangeError("not_found", message, status=404)
        body = json_body(response, path)
        if status >= 400:
            kind = "http_5xx" if status >= 500 else "http_4xx"
            raise ExchangeError(kind, f"{path}: HTTP {status} {_error_message(response)}", status=status)
        return body


def _error_message(response: httpx.Response) -> str:
    """Coinbase's ``{"message": ...}``, or the start of whatever else came back (a CDN page, say)."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:200]
    return str(body.get("message")) if isinstance(body, dict) else response.text[:200]


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
    pydantic's ``ValidationError`` (also a ``ValueError``) when a value is out of range, as
    ``fetcher.binance.parse_ticker`` does.

    ``product_id`` is the listing's id for ``pair`` (``SymbolInfo.symbol``): the ticker body does not
    name its product, and an id is never guessed from a pair's spelling.

    - ``timestamp`` is ``fetched_at``. The ticker's ``time`` is the last trade's: it says how long
      the market has been quiet, not how current the figures are (the bid, ask and volume are as of
      the request). A pair that trades once a minute would otherwise look stale while its figures
      are seconds old, and one quiet for a day would be refused as a day-old ticker. The time is
      still read, so a ticker without a valid one is refused as malformed.
    - ``volume`` is the ticker's 24 h volume in the base currency.
    - ``quoteVolume`` is ``volume * price``, an estimate: Coinbase publishes no quote volume, and
      the day's trades were not all at the last price.
    - ``change24h`` is measured from the stats' ``open``, the price 24 hours ago on a rolling window,
      so it means what Binance's does. ``high24h``/``low24h`` are the stats' own.
    """
    try:
        price = float(ticker_raw["price"])
        volume = float(ticker_raw["volume"])
        open_price = float(stats_raw["open"])
        _epoch_ms(str(ticker_raw["time"]))  # a ticker without a valid time is malformed
        values = {
            "pair": pair,
            "price": price,
            "volume": volume,
            "quoteVolume": volume * price,
            "timestamp": fetched_at,
            "fetchedAt": fetched_at,
            "change24h": round((price - open_price) / open_price * 100, 4)
            if open_price > 0 and math.isfinite(open_price)
            else math.nan,  # refused by Ticker's validation, naming change24h
            "high24h": float(stats_raw["high"]),
            "low24h": float(stats_raw["low"]),
            "exchange": EXCHANGE,
            "symbol": product_id,
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed {EXCHANGE} ticker for {pair}: {type(exc).__name__} {exc}") from None
    return Ticker.model_validate(values)
