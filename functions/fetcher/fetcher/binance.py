"""Binance Spot REST adapter (public market data): the protocol, its errors, its weights.

Only the fetcher imports this module; the read path never reaches an exchange.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from fetcher.exchange import ExchangeError, ExchangeInfo, RateLimitedError, SymbolInfo, json_body
from market_data.models import Ticker

EXCHANGE = "binance"
# Binance.US speaks the same protocol from its own base, with its own listing and a smaller budget.
BINANCE_US = "binance_us"
BINANCE_US_BASE_URL = "https://api.binance.us"
BINANCE_US_WEIGHT_LIMIT_1M = 1200
TICKER_PATH = "/api/v3/ticker/24hr"
EXCHANGE_INFO_PATH = "/api/v3/exchangeInfo"
WEIGHT_HEADER = "x-mbx-used-weight-1m"
INVALID_SYMBOL = -1121
# What an operator can do about HTTP 451: binance.com refuses US addresses (AWS us-east-1 included).
RESTRICTED_LOCATION_ADVICE = (
    "binance.com refuses requests from this location (HTTP 451): deploy the stack in a non-US region "
    "(e.g. eu-west-1), or set BINANCE_API_BASE_URL to another base speaking the same protocol"
)
# Retry-After is absent on some error paths; Binance bans last at least this long after a 418.
DEFAULT_RETRY_AFTER_S = 60


# Binance counts request weight per IP per wall-clock minute; its default limit, until exchangeInfo says.
DEFAULT_WEIGHT_LIMIT_1M = 6000
WEIGHT_WINDOW_MS = 60_000


def ticker_weight(symbol_count: int) -> int:
    """Request weight of /api/v3/ticker/24hr with ``symbols``: 2 for 1-20, 40 for 21-100, 80 above."""
    if symbol_count <= 20:
        return 2
    if symbol_count <= 100:
        return 40
    return 80


class InvalidSymbolError(ExchangeError):
    """-1121: one unknown name fails the whole ``symbols`` request."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_symbol", message, status=400)


class BinanceClient:
    """Calls Binance (or Binance.US: ``name=BINANCE_US``) over a shared ``httpx.Client`` (created
    once per container, with timeouts). ``default_weight_limit_1m`` holds until exchangeInfo says."""

    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        *,
        name: str = EXCHANGE,
        default_weight_limit_1m: int = DEFAULT_WEIGHT_LIMIT_1M,
    ) -> None:
        self.name = name
        self.default_weight_limit_1m = default_weight_limit_1m
        self._http = http
        self._base_url = base_url.rstrip("/")
        self.last_used_weight: int | None = None
        self.last_used_weight_at: int = 0  # ms when the header was read

    def exchange_info(self) -> ExchangeInfo:
        body = self._get(EXCHANGE_INFO_PATH, {})
        if not isinstance(body, dict) or not isinstance(body.get("symbols"), list):
            raise ExchangeError("bad_body", "exchangeInfo without a symbols list")
        by_pair: dict[str, SymbolInfo] = {}
        for entry in body["symbols"]:
            try:
                info = SymbolInfo(entry["symbol"], entry["baseAsset"], entry["quoteAsset"], entry["status"])
            except (KeyError, TypeError):
                continue  # a malformed entry names no pair we could serve
            by_pair[info.pair] = info
        limit = next(
            (
                int(rule["limit"])
                for rule in body.get("rateLimits", [])
                if rule.get("rateLimitType") == "REQUEST_WEIGHT"
                and rule.get("interval") == "MINUTE"
                and rule.get("intervalNum") == 1
            ),
            None,
        )
        return ExchangeInfo(by_pair, limit)

    def tickers(self, symbols: Sequence[str]) -> list[dict[str, Any]]:
        """Raw 24 h tickers for ``symbols`` in one request."""
        param = orjson.dumps(list(symbols)).decode()
        body = self._get(TICKER_PATH, {"symbols": param})
        if not isinstance(body, list):
            raise ExchangeError("bad_body", f"ticker/24hr answered {type(body).__name__}, expected a list")
        return body

    def _get(self, path: str, params: dict[str, str]) -> Any:
        try:
            response = self._http.get(self._base_url + path, params=params)
        except httpx.TimeoutException as exc:
            raise ExchangeError("timeout", f"{path}: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise ExchangeError("network", f"{path}: {type(exc).__name__}: {exc}") from exc
        weight = response.headers.get(WEIGHT_HEADER)
        if weight is not None and weight.isdigit():
            self.last_used_weight, self.last_used_weight_at = int(weight), time.time_ns() // 1_000_000
        status = response.status_code
        if status in (429, 418):
            raise RateLimitedError(status, _retry_after(response), _error_message(response))
        if status == 451:
            message = f"{_error_message(response)} -- {RESTRICTED_LOCATION_ADVICE}"
            raise ExchangeError("restricted_location", message, status=451)
        body = json_body(response, path)
        if status >= 400:
            code = body.get("code") if isinstance(body, dict) else None
            if code == INVALID_SYMBOL:
                raise InvalidSymbolError(str(body.get("msg", "Invalid symbol.")))
            kind = "http_5xx" if status >= 500 else "http_4xx"
            raise ExchangeError(kind, f"{path}: HTTP {status} {_error_message(response)}", status=status)
        return body


def _retry_after(response: httpx.Response) -> int:
    value = response.headers.get("retry-after", "")
    return int(value) if value.isdigit() else DEFAULT_RETRY_AFTER_S


def _error_message(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
        return f"{body.get('code')} {body.get('msg')}" if isinstance(body, dict) else response.text[:200]
    except orjson.JSONDecodeError:
        return response.text[:200]


def parse_ticker(raw: dict[str, Any], pair: str, *, fetched_at: int, exchange: str = EXCHANGE) -> Ticker:
    """Turn one raw 24 h ticker into a validated Ticker (raises ``ValueError`` when it is bad).

    ``timestamp`` is the exchange's own ``closeTime`` (the end of its rolling 24 h window), and
    ``change24h`` is computed from lastPrice and openPrice so the MINI shape, which has no
    priceChangePercent, means the same as the FULL one.
    """
    try:
        price = float(raw["lastPrice"])
        open_price = float(raw["openPrice"])
        values = {
            "pair": pair,
            "price": price,
            "volume": float(raw["volume"]),
            "quoteVolume": float(raw["quoteVolume"]),
            # The exchange's own time; the fetch time only where it gives none.
            "timestamp": int(raw["closeTime"]) if raw.get("closeTime") is not None else fetched_at,
            "fetchedAt": fetched_at,
            "change24h": round((price - open_price) / open_price * 100, 4)
            if open_price > 0 and math.isfinite(open_price)
            else math.nan,
            "high24h": float(raw["highPrice"]),
            "low24h": float(raw["lowPrice"]),
            "exchange": exchange,
            "symbol": str(raw["symbol"]),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed ticker for {pair}: {type(exc).__name__} {exc}") from None
    return Ticker.model_validate(values)
