"""Binance Spot REST (binance.com, and Binance.US under its own name): the protocol, its errors,
its weights, and the exchange as the tick uses it.

Batches of up to ``MARKET_DATA_BATCH_SIZE`` symbols per request, a few in flight, within a weight
budget a minute; one unknown symbol is found by bisection instead of blanking a batch.

Longer than most modules because it holds the whole exchange, as every exchange module does: its
names, its client, its parser and how the tick fetches from it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from pydantic import ValidationError

from fetcher.exchanges.base import (
    ExchangeError,
    ExchangeSpec,
    FetchResult,
    Limits,
    ListingEntry,
    RateLimitedError,
    WeightBudget,
    change_24h,
    number,
    read_candle_rows,
    short_reason,
)
from fetcher.exchanges.transport import Transport
from market_data.candles import Candle
from market_data.clock import now_ms
from market_data.models import Ticker

EXCHANGE = "binance"
BINANCE_US = "binance_us"  # the same protocol from its own base, with its own listing and budget
BASE_URL = "https://api.binance.com"
BINANCE_US_BASE_URL = "https://api.binance.us"
BINANCE_US_WEIGHT_LIMIT_1M = 1200
TICKER_PATH = "/api/v3/ticker/24hr"
EXCHANGE_INFO_PATH = "/api/v3/exchangeInfo"
KLINES_PATH = "/api/v3/klines"
KLINES_WEIGHT = 2
MAX_KLINES = 1000  # per request, as Binance documents it
KLINE_INTERVALS = {60_000: "1m", 300_000: "5m", 900_000: "15m", 3_600_000: "1h"}
# Backfill's share of the weight: one request of 2 every 0.4 s is 300 a minute, 5 % of the limit.
BACKFILL_GAP_S = 0.4
WEIGHT_HEADER = "x-mbx-used-weight-1m"
EXCHANGE_INFO_WEIGHT = 20  # /api/v3/exchangeInfo, as Binance documents it
INVALID_SYMBOL = -1121
SERVABLE_STATUS = "TRADING"
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
# Share of the exchange's weight limit this service allows itself: the rest is headroom for other
# clients behind the same address (a NAT gateway is shared) and for the limit's own rounding.
WEIGHT_BUDGET_SHARE = 0.9


def ticker_weight(symbol_count: int) -> int:
    """Request weight of /api/v3/ticker/24hr with ``symbols``: 2 for 1-20, 40 for 21-100, 80 above."""
    if symbol_count <= 20:
        return 2
    if symbol_count <= 100:
        return 40
    return 80


def request_weight(request: httpx.Request) -> int:
    """The weight Binance charges for one of our requests, from what was asked."""
    if request.url.path.endswith(EXCHANGE_INFO_PATH):
        return EXCHANGE_INFO_WEIGHT
    if request.url.path.endswith(KLINES_PATH):
        return KLINES_WEIGHT
    if request.url.path.endswith(TICKER_PATH):
        try:
            symbols = orjson.loads(request.url.params.get("symbols", "[]"))
        except orjson.JSONDecodeError:
            symbols = []
        return ticker_weight(len(symbols) if isinstance(symbols, list) else 0)
    return 0


class InvalidSymbolError(ExchangeError):
    """-1121: one unknown name fails the whole ``symbols`` request."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_symbol", message, status=400)


@dataclass(frozen=True)
class ExchangeInfo:
    by_pair: dict[str, ListingEntry]
    weight_limit_1m: int | None


def _describe(body: Any) -> str | None:
    return f"{body.get('code')} {body.get('msg')}" if isinstance(body, dict) else None


def _invalid_symbol(status: int, body: Any) -> ExchangeError | None:
    if status >= 400 and isinstance(body, dict) and body.get("code") == INVALID_SYMBOL:
        return InvalidSymbolError(str(body.get("msg", "Invalid symbol.")))
    return None


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
        self.last_used_weight: int | None = None
        self.last_used_weight_at: int = 0  # ms when the header was read
        # The weight our own requests cost, a running total: the header counts every client
        # behind the address, so a tick's own share is told apart from it here.
        self.weight_spent = 0
        self._spent_lock = threading.Lock()  # the batches of a slot answer on several threads
        self._transport = Transport(
            http,
            base_url,
            default_retry_after_s=DEFAULT_RETRY_AFTER_S,
            describe=_describe,
            rate_limit_statuses=frozenset({429, 418}),
            # Only binance.com's refusal has advice of its own (deploy elsewhere, or another base).
            restricted_advice=RESTRICTED_LOCATION_ADVICE if name == EXCHANGE else "",
            observe=self._observe_weight,
        )

    def _observe_weight(self, response: httpx.Response) -> None:
        weight = response.headers.get(WEIGHT_HEADER)
        if weight is not None and weight.isdigit():
            self.last_used_weight, self.last_used_weight_at = int(weight), time.time_ns() // 1_000_000
        # Charged when Binance itself answered: not a refusal for weight (418, 429), not a CDN's 5xx.
        if response.status_code < 500 and response.status_code not in (418, 429):
            with self._spent_lock:
                self.weight_spent += request_weight(response.request)

    def exchange_info(self) -> ExchangeInfo:
        body = self._transport.get(EXCHANGE_INFO_PATH)
        if not isinstance(body, dict) or not isinstance(body.get("symbols"), list):
            raise ExchangeError("bad_body", "exchangeInfo without a symbols list")
        by_pair: dict[str, ListingEntry] = {}
        for entry in body["symbols"]:
            try:
                status = str(entry["status"])
                info = ListingEntry(
                    entry["symbol"],
                    entry["baseAsset"],
                    entry["quoteAsset"],
                    status,
                    status == SERVABLE_STATUS,
                )
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

    def klines(self, symbol: str, interval_ms: int, start_ms: int, end_ms: int) -> list[Candle]:
        """Closed candles of ``symbol`` in ``[start_ms, end_ms)``, oldest first: one request, at
        most MAX_KLINES. Rows are [open time, open, high, low, close, base volume, close time, ...]."""
        params = {
            "symbol": symbol, "interval": KLINE_INTERVALS[interval_ms], "startTime": str(start_ms),
            "endTime": str(end_ms - 1), "limit": str(MAX_KLINES),
        }  # fmt: skip
        body = self._transport.get(KLINES_PATH, params, refine=_invalid_symbol)
        if not isinstance(body, list):
            raise ExchangeError("bad_body", f"{KLINES_PATH} answered {type(body).__name__}, expected a list")
        return read_candle_rows(
            body, (1, 2, 3, 4, 5), time_unit_ms=1, interval_ms=interval_ms, start_ms=start_ms,
            end_ms=end_ms, where=f"{KLINES_PATH} for {symbol}",
        )  # fmt: skip

    def tickers(self, symbols: Sequence[str]) -> list[dict[str, Any]]:
        """Raw 24 h tickers for ``symbols`` in one request."""
        param = orjson.dumps(list(symbols)).decode()
        body = self._transport.get(TICKER_PATH, {"symbols": param}, refine=_invalid_symbol)
        if not isinstance(body, list):
            raise ExchangeError("bad_body", f"ticker/24hr answered {type(body).__name__}, expected a list")
        return body


def parse_ticker(raw: dict[str, Any], pair: str, *, fetched_at: int, exchange: str = EXCHANGE) -> Ticker:
    """Turn one raw 24 h ticker into a validated Ticker (raises ``ValueError`` when it is bad).

    ``timestamp`` is the exchange's own ``closeTime`` (the end of its rolling 24 h window), and
    ``change24h`` is computed from lastPrice and openPrice so the MINI shape, which has no
    priceChangePercent, means the same as the FULL one.
    """
    try:
        price = number(raw["lastPrice"])
        values = {
            "pair": pair,
            "price": price,
            "volume": number(raw["volume"]),
            "quoteVolume": number(raw["quoteVolume"]),
            # The exchange's own time; the fetch time only where it gives none.
            "timestamp": int(raw["closeTime"]) if raw.get("closeTime") is not None else fetched_at,
            "fetchedAt": fetched_at,
            "change24h": change_24h(price, number(raw["openPrice"])),
            "high24h": number(raw["highPrice"]),
            "low24h": number(raw["lowPrice"]),
            "exchange": exchange,
            "symbol": str(raw["symbol"]),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed ticker for {pair}: {type(exc).__name__} {exc}") from None
    return Ticker.model_validate(values)


class BinanceExchange:
    """Binance's protocol as the tick uses it: batches, a few in flight, within the weight budget."""

    def __init__(self, client: BinanceClient, *, batch_size: int, executor: ThreadPoolExecutor) -> None:
        self.client = client
        self.name = client.name
        self.batch_size = batch_size
        self._executor = executor  # shared by the batches of every slot: bounds the requests in flight
        self.weight_limit_1m: int | None = None  # as exchangeInfo last said

    def listing(self) -> dict[str, ListingEntry]:
        info = self.client.exchange_info()
        self.weight_limit_1m = info.weight_limit_1m or self.weight_limit_1m
        return info.by_pair

    def limits(self, now: int) -> Limits:
        used = self.client.last_used_weight
        if used is None:
            return Limits()
        limit = self.weight_limit_1m or self.client.default_weight_limit_1m
        return Limits(
            weight=WeightBudget(
                used=used,
                reported_at=self.client.last_used_weight_at,
                budget=int(limit * WEIGHT_BUDGET_SHARE),
                window_ms=WEIGHT_WINDOW_MS,
                cost=self.weight_of,
                limit=limit,
                spent=self.client.weight_spent,
            )
        )

    max_candles = MAX_KLINES
    backfill_gap_s = BACKFILL_GAP_S

    def candles(self, symbol: str, interval_ms: int, start_ms: int, end_ms: int) -> list[Candle]:
        return self.client.klines(symbol, interval_ms, start_ms, end_ms)

    def candle_reach_ms(self, interval_ms: int) -> int | None:
        return None  # klines go back to the symbol's listing

    def batches(self, symbols: list[str]) -> list[list[str]]:
        size = self.batch_size
        return [symbols[start : start + size] for start in range(0, len(symbols), size)]

    def weight_of(self, pairs: int) -> int:
        """The weight of one slot's requests for ``pairs`` pairs, batch by batch."""
        return sum(ticker_weight(len(batch)) for batch in self.batches(["?"] * pairs))

    def fetch(self, routes: Mapping[str, str], *, deadline: float) -> FetchResult:
        """Fetch ``routes`` in batches; no request leaves after ``deadline`` (monotonic seconds)."""
        result = FetchResult(self.name)
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
                    parsed[pair] = parse_ticker(raw, pair, fetched_at=fetched_at, exchange=self.name)
                except (ValidationError, ValueError) as exc:
                    invalid[pair] = short_reason(exc)
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


SPEC = ExchangeSpec(
    EXCHANGE,
    BASE_URL,
    lambda context: BinanceExchange(
        BinanceClient(context.http, context.base_url),
        batch_size=context.settings.market_data_batch_size,
        executor=context.batches,
    ),
)
US_SPEC = ExchangeSpec(
    BINANCE_US,
    BINANCE_US_BASE_URL,
    lambda context: BinanceExchange(
        BinanceClient(
            context.http,
            context.base_url,
            name=BINANCE_US,
            default_weight_limit_1m=BINANCE_US_WEIGHT_LIMIT_1M,
        ),
        batch_size=context.settings.market_data_batch_size,
        executor=context.batches,
    ),
)
