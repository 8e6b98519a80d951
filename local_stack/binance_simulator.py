"""Binance Spot REST simulator: the public market-data endpoints over real HTTP, with switchable faults.

It speaks the protocol as shared/fixtures/binance shows it (numbers as strings, -1121 when any name in
`symbols` is unknown, request weight per wall-clock minute with 429 and then 418), so the fetcher and the
end-to-end tests exercise the real wire format offline. Klines come from local_stack.simulated_candles:
each symbol's history around its starting price, the kline in progress closing at the ticker's last
price. Stdlib only: the offline demo stack runs it too.
"""

import json
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from local_stack.simulated_candles import CandleSeries
from local_stack.simulator_http import Fault, LoggedRequest, Reply, SimulatorBase, json_reply

DAY_MS = 86_400_000
STEP_S = 0.25  # at most one random-walk step per symbol per 250 ms, however often it is read
STEP_SIGMA = 0.0005  # relative size of one step: visible at 8 decimals, small like real ticks
MAX_CATCHUP_STEPS = 240  # after an idle gap, move like at most a minute of steps (one draw, bounded work)
REVERSION = 0.002  # per-step pull towards the starting price, so 24 h changes stay plausible in long demos
LOG_LIMIT = 10_000  # request records kept
STATUSES = {"PRE_TRADING", "TRADING", "POST_TRADING", "END_OF_DAY", "HALT", "AUCTION_MATCH", "BREAK"}
SYMBOL_RE = re.compile(r"[A-Z0-9\-_.]{1,20}")
ORDER_TYPES = ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"]
DEFAULT_SYMBOLS = [  # binance.com lists no USD pairs; ETHBTC is in BREAK as in the exchangeInfo fixture
    ("BTCUSDT", "BTC", "USDT", "TRADING", 67_000.0),
    ("ETHUSDT", "ETH", "USDT", "TRADING", 3_500.0),
    ("BNBUSDT", "BNB", "USDT", "TRADING", 590.0),
    ("SOLUSDT", "SOL", "USDT", "TRADING", 150.0),
    ("XRPUSDT", "XRP", "USDT", "TRADING", 0.52),
    ("ADAUSDT", "ADA", "USDT", "TRADING", 0.45),
    ("DOGEUSDT", "DOGE", "USDT", "TRADING", 0.16),
    ("ETHBTC", "ETH", "BTC", "BREAK", 0.052),
]

ILLEGAL = "Illegal characters found in parameter '{}'; legal range is '{}'."
INVALID_SYMBOL = {"code": -1121, "msg": "Invalid symbol."}
COMBINATION = {"code": -1128, "msg": "Combination of optional parameters invalid."}
ILLEGAL_SYMBOL = {"code": -1100, "msg": ILLEGAL.format("symbol", "^[A-Z0-9-_.]{1,20}$")}
ILLEGAL_SYMBOLS = {
    "code": -1100,
    "msg": ILLEGAL.format("symbols", '^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$'),
}
ILLEGAL_TYPE = {"code": -1100, "msg": ILLEGAL.format("type", "^(FULL|MINI)$")}
MANDATORY = "Mandatory parameter '{}' was not sent, was empty/null, or malformed."
INVALID_INTERVAL = {"code": -1120, "msg": "Invalid interval."}
INVALID_LIMIT = {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."}
START_AFTER_END = {"code": -1023, "msg": "Start time is greater than end time."}
KLINE_INTERVALS = {  # Binance's intervals that are whole minutes within a day, in seconds
    "1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1_800, "1h": 3_600, "2h": 7_200, "4h": 14_400,
    "6h": 21_600, "8h": 28_800, "12h": 43_200, "1d": 86_400,
}  # fmt: skip
DEFAULT_KLINES, MAX_KLINES, KLINES_WEIGHT = 500, 1000, 2
EMPTY_SYMBOLS = {
    "code": -1102,
    "msg": "Mandatory parameter 'symbols' was not sent, was empty/null, or malformed.",
}
DUPLICATES = {"code": -1101, "msg": "Duplicate values for a parameter detected."}
RESTRICTED = {  # HTTP 451, exactly as the fixture
    "code": 0,
    "msg": "Service unavailable from a restricted location according to 'b. Eligibility' in "
    "https://www.binance.com/en/terms. Please contact customer service if you believe you received this "
    "message in error.",
}
TOO_MUCH_WEIGHT = (
    "Too much request weight used; current limit is {} request weight per 1 MINUTE. "
    "Please use WebSocket Streams for live updates to avoid polling the API."
)
NOT_FOUND = {"code": -1000, "msg": "Unknown endpoint."}
SERVER_ERRORS = {  # Binance answers 500/503 itself; 502/504 come from its CDN as HTML
    500: {"code": -1000, "msg": "An unknown error occurred while processing the request."},
    503: {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."},
}
CDN_PAGE = (
    "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center><hr>CloudFront</body></html>"
)
# Data faults for validation tests: each a value Binance's documented shape could carry but no
# real ticker should (a boolean, a price outside its own day's range, a time in the future, a number
# beyond what DynamoDB can store).
BAD_TICKER_KINDS = {
    "zero", "negative", "nan", "high_below_low", "boolean", "above_high", "future", "out_of_range",
}  # fmt: skip


def _f8(x: float) -> str:
    return f"{x:.8f}"


def _to_tick(x: float, tick: float) -> float:
    return max(tick, round(x / tick) * tick)


@dataclass(frozen=True)
class RequestRecord(LoggedRequest):
    params: dict[str, Any]  # query parameters; `symbols` decoded to a list when it parsed
    status: int
    weight: int  # request weight charged (0 for rejected or fault answers)


class SymbolState:
    """One market: a random walk of the last price plus 24 h statistics kept consistent with it.

    Nearly all of its state derives from the starting price, so each attribute is set once, where it is
    computed."""

    def __init__(
        self, symbol: str, base: str, quote: str, status: str, anchor: float, rng: random.Random, seed: int
    ) -> None:
        self.symbol, self.base, self.quote, self.status = symbol, base, quote, status
        self.anchor = anchor  # the starting price; the walk is pulled gently back towards it
        self.bad: str | None = None  # a data fault for validation tests, applied when rendering
        self.tick = tick = max(1e-8, min(0.01, 10 ** (math.floor(math.log10(anchor)) - 4)))
        self.last = last = _to_tick(anchor, tick)
        self.open = open_ = _to_tick(anchor * (1 + rng.uniform(-0.03, 0.03)), tick)
        self.prev_close = max(tick, open_ - tick * rng.randint(0, 9))
        self.high = _to_tick(max(open_, last) * (1 + rng.uniform(0.002, 0.02)), tick)
        self.low = _to_tick(min(open_, last) * (1 - rng.uniform(0.002, 0.02)), tick)
        count, self.volume = rng.randint(50_000, 2_000_000), rng.uniform(1e6, 5e8) / anchor
        spread = self.high - self.low
        # Sum of qty * price: weightedAvgPrice = quote_volume / volume then stays within [low, high].
        self.quote_volume = self.volume * rng.uniform(self.low + spread / 4, self.high - spread / 4)
        self.first_id = rng.randint(10**8, 4 * 10**9)
        self.last_id = self.first_id + count - 1
        self.avg_trade_qty = self.last_qty = self.volume / count
        self.stepped_at = time.monotonic()
        # Its klines: a history of days like the 24 h it starts with, named by the seed and the symbol.
        self.series = CandleSeries(f"{seed}/{symbol}", anchor, self.volume, count)

    def advance(self, rng: random.Random, now: float) -> None:
        elapsed = now - self.stepped_at
        if elapsed < STEP_S:
            return
        self.stepped_at = now
        if self.status != "TRADING":  # a halted or broken market does not trade
            return
        steps = min(elapsed / STEP_S, MAX_CATCHUP_STEPS)
        drift = -REVERSION * steps * math.log(self.last / self.anchor)
        self.last = _to_tick(self.last * math.exp(rng.gauss(drift, STEP_SIGMA * math.sqrt(steps))), self.tick)
        self.high, self.low = max(self.high, self.last), min(self.low, self.last)
        trades = rng.randint(1, 20)
        qty = self.avg_trade_qty * trades * rng.uniform(0.5, 1.5)
        self.volume += qty
        self.quote_volume += qty * self.last
        self.last_id += trades
        self.last_qty = qty / trades

    def ticker(self, rng: random.Random, now_ms: int, full: bool) -> dict[str, Any]:
        last, high, low, open_ = _f8(self.last), _f8(self.high), _f8(self.low), _f8(self.open)
        if self.bad == "zero":
            last = "0.00000000"
        elif self.bad == "negative":
            last = "-" + last
        elif self.bad == "nan":
            last = "NaN"
        elif self.bad == "high_below_low":
            high, low = _f8(self.low * 0.99), _f8(self.high * 1.01)
        elif self.bad == "above_high":
            last = _f8(self.high * 1.5)
        close_time = now_ms + 30_000 if self.bad == "future" else now_ms
        tail = {
            "openTime": now_ms - DAY_MS,
            "closeTime": close_time,
            "firstId": self.first_id,
            "lastId": self.last_id,
            "count": self.last_id - self.first_id + 1,
        }
        volumes: dict[str, Any] = {"volume": _f8(self.volume), "quoteVolume": _f8(self.quote_volume)}
        if self.bad == "out_of_range":
            volumes["quoteVolume"] = "1e200"
        ticker_last: Any = True if self.bad == "boolean" else last
        if not full:
            ohlc = {"openPrice": open_, "highPrice": high, "lowPrice": low, "lastPrice": ticker_last}
            return {"symbol": self.symbol, **ohlc, **volumes, **tail}
        change = Decimal(_f8(self.last)) - Decimal(open_)
        return {
            "symbol": self.symbol,
            "priceChange": f"{change:.8f}",
            "priceChangePercent": f"{(change * 100 / Decimal(open_)).quantize(Decimal('0.001')):.3f}",
            "weightedAvgPrice": _f8(self.quote_volume / self.volume),
            "prevClosePrice": _f8(self.prev_close),
            "lastPrice": ticker_last,
            "lastQty": _f8(self.last_qty),
            "bidPrice": _f8(self.last - self.tick),
            "bidQty": _f8(self.avg_trade_qty * rng.uniform(0.1, 20)),
            "askPrice": _f8(self.last + self.tick),
            "askQty": _f8(self.avg_trade_qty * rng.uniform(0.1, 20)),
            **{"openPrice": open_, "highPrice": high, "lowPrice": low},
            **volumes,
            **tail,
        }

    def kline(self, start: int, interval: int, now: float) -> list[Any]:
        """The kline of ``interval`` s opening at ``start`` (s), as the klines fixture's row."""
        candle = self.series.candle(start, interval, now)
        prices = (candle.open, candle.high, candle.low, candle.close)
        # Takers buy the larger share of a kline that rose: 10 % to 90 % by where it closed in its range.
        spread = candle.high - candle.low
        bought = candle.volume * (0.5 + 0.4 * (candle.close - candle.open) / spread if spread else 0.5)
        return [
            start * 1000,
            *(_f8(_to_tick(price, self.tick)) for price in prices),
            _f8(candle.volume),
            (start + interval) * 1000 - 1,  # the close time: the last ms of the interval
            _f8(candle.volume * candle.vwap),
            candle.trades,
            _f8(bought),
            _f8(bought * candle.vwap),
            "0",  # unused, as Binance sends it
        ]

    def info(self) -> dict[str, Any]:
        price_filter = {
            "filterType": "PRICE_FILTER",
            "minPrice": _f8(self.tick),
            "maxPrice": _f8(self.anchor * 1000),
            "tickSize": _f8(self.tick),
        }
        return {
            "symbol": self.symbol,
            "status": self.status,
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "orderTypes": ORDER_TYPES,
            "isSpotTradingAllowed": True,
            "filters": [price_filter],
            "permissionSets": [["SPOT"]],
        }


def _parse_symbols(params: dict[str, str]) -> tuple[list[str] | None, dict | None]:
    """The requested names (None: all symbols) or the error Binance gives for the parameters."""
    if "symbol" in params and "symbols" in params:
        return None, COMBINATION
    if "symbol" in params:
        return ([params["symbol"]], None) if SYMBOL_RE.fullmatch(params["symbol"]) else (None, ILLEGAL_SYMBOL)
    if "symbols" not in params:
        return None, None
    try:
        names = json.loads(params["symbols"])  # tolerates spaces, as Binance does
    except ValueError:
        return None, ILLEGAL_SYMBOLS
    if not isinstance(names, list) or not all(isinstance(n, str) and SYMBOL_RE.fullmatch(n) for n in names):
        return None, ILLEGAL_SYMBOLS
    if not names:
        return None, EMPTY_SYMBOLS
    return (names, None) if len(set(names)) == len(names) else (None, DUPLICATES)


def _kline_opens(step: int, now_ms: int, start: int | None, end: int | None, limit: int) -> range:
    """The open times (ms) of the klines asked for, oldest first: ``limit`` from the first opening at or
    after ``start``, else the newest ``limit``; none opening after ``end`` nor after the one in progress."""
    newest = now_ms // step * step
    if end is not None:
        newest = min(newest, end // step * step)
    if start is not None:
        first = -(-start // step) * step
        return range(first, min(newest, first + (limit - 1) * step) + 1, step)
    return range(max(0, newest - (limit - 1) * step), newest + 1, step)


def _ticker_weight(names: list[str] | None, error: dict | None) -> int:
    if names is None:
        return 2 if error else 80  # no symbol parameter at all means every symbol
    return 2 if len(names) <= 20 else 40 if len(names) <= 100 else 80


class BinanceSimulator(SimulatorBase[RequestRecord]):
    """`with BinanceSimulator() as sim: httpx.get(sim.base_url + "/api/v3/ticker/24hr", ...)`.

    Control over HTTP (no weight, not logged): POST /_simulator/faults {"fault": kind, "path", "count", ...
    set_fault's keywords} or {"fault": "bad_ticker", "symbol", "kind"}; DELETE /_simulator/faults;
    GET|DELETE /_simulator/requests; GET /_simulator/symbols; POST /_simulator/symbols {"action": "add" |
    "set_status" | "remove" | "generate", ...the method's keywords}; POST /_simulator/reset.
    """

    thread_name = "binance-simulator"
    response_faults = frozenset(
        {"rate_limit", "ban", "restricted", "server_error", "invalid_json", "truncated", "partial"}
    )

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        weight_limit: int = 6000,
        ban_seconds: float = 120.0,
        weight_window_s: float = 60.0,
    ) -> None:
        super().__init__(host, port, log_limit=LOG_LIMIT)
        self.weight_limit, self.ban_seconds, self.weight_window_s = weight_limit, ban_seconds, weight_window_s
        self.seed, self._rng = seed, random.Random(seed)
        self._symbols: dict[str, SymbolState] = {}
        self._window, self._used = -1, 0
        self._retry_until = self._banned_until = 0.0  # wall time a 429's Retry-After / an IP ban ends
        self._generated = 0
        self._routes = {  # path -> (weight from parsed params, handler)
            "/api/v3/ticker/24hr": (_ticker_weight, self._ticker),
            "/api/v3/exchangeInfo": (lambda names, error: 20, self._exchange_info),
            "/api/v3/klines": (lambda names, error: KLINES_WEIGHT, self._klines),
        }
        for symbol, base, quote, status, price in DEFAULT_SYMBOLS:
            self.add_symbol(symbol, base, quote, status, price)

    # --- inspection and control ----------------------------------------------------------------------
    @property
    def used_weight(self) -> int:
        with self._lock:
            return self._used_at(time.time())

    def reset_limits(self) -> None:
        """Forget used weight, a pending Retry-After and any ban."""
        with self._lock:
            self._used, self._retry_until, self._banned_until = 0, 0.0, 0.0

    def _fault_options(
        self, kind: str, status: int | None, retry_after: float | None = None
    ) -> tuple[int, float]:
        """``status``: a server_error's 5xx (503 by default); ``retry_after``: a rate_limit's or ban's
        seconds (the ban's length, else 1, by default)."""
        status, _ = super()._fault_options(kind, status)
        if retry_after is None:
            retry_after = self.ban_seconds if kind == "ban" else 1.0
        return status, retry_after

    def set_bad_ticker(self, symbol: str, kind: str | None) -> None:
        """Corrupt one symbol's ticker (zero, negative, nan, high_below_low); None restores it."""
        if kind is not None and kind not in BAD_TICKER_KINDS:
            raise ValueError(f"unknown bad ticker kind {kind!r}; known: {sorted(BAD_TICKER_KINDS)}")
        with self._lock:
            self._symbols[symbol].bad = kind

    def clear_faults(self) -> None:
        """Remove all faults and bad tickers, and forgive a pending Retry-After or ban: healthy again."""
        with self._lock:
            self._faults.clear()
            for state in self._symbols.values():
                state.bad = None
            self._retry_until = self._banned_until = 0.0

    @property
    def symbols(self) -> list[str]:
        with self._lock:
            return list(self._symbols)

    def traded_pairs(self) -> list[str]:
        with self._lock:
            return [f"{s.base}/{s.quote}" for s in self._symbols.values() if s.status == "TRADING"]

    def add_symbol(
        self, symbol: str, base: str, quote: str, status: str = "TRADING", price: float = 1.0
    ) -> None:
        if not SYMBOL_RE.fullmatch(symbol) or status not in STATUSES or not 0 < price < 1e12:
            raise ValueError(f"bad symbol {symbol!r}, status {status!r} or price {price!r}")
        with self._lock:
            if symbol in self._symbols:
                raise ValueError(f"{symbol} exists")
            self._symbols[symbol] = SymbolState(
                symbol, base, quote, status, float(price), self._rng, self.seed
            )

    def set_status(self, symbol: str, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self._lock:
            self._symbols[symbol].status = status

    def jump(self, symbol: str, factor: float) -> None:
        """Move a market's price by ``factor`` at once (and keep it there): a jump to hold back."""
        if not 0 < factor < 1e6:
            raise ValueError(f"bad factor {factor!r}")
        with self._lock:
            state = self._symbols[symbol]
            state.anchor *= factor
            state.last = _to_tick(state.last * factor, state.tick)
            state.high, state.low = max(state.high, state.last), min(state.low, state.last)
            now = time.time()
            state.series.shift(now, factor)  # its klines jump too, from this minute on
            state.series.observe(now, state.last)

    def remove_symbol(self, symbol: str) -> None:
        with self._lock:
            del self._symbols[symbol]

    def add_generated_symbols(self, n: int) -> list[str]:
        """Add n TRADING symbols SYM0001USDT, SYM0002USDT, ... (numbering continues across calls)."""
        if not 0 <= n <= 10_000:
            raise ValueError("n must be within 0..10000")
        with self._lock:
            start, self._generated = self._generated + 1, self._generated + n
            names = [f"SYM{i:04d}" for i in range(start, start + n)]
            for base in names:
                self.add_symbol(
                    f"{base}USDT", base, "USDT", "TRADING", round(self._rng.uniform(0.01, 500), 4)
                )
            return [f"{base}USDT" for base in names]

    # --- request handling ----------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: str = "", body: bytes = b"") -> Reply:
        if path.startswith("/_simulator/"):
            return self._control(method, path, body)
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        names, error = _parse_symbols(params)
        self._hold_for_delay_faults(path)
        now = time.time()
        with self._lock:
            reply, weight = self._decide(method, path, params, names, error, now)
            used = str(self._used_at(now))
            reply.headers.update({"X-MBX-USED-WEIGHT": used, "X-MBX-USED-WEIGHT-1M": used})
            logged = dict(params, symbols=names) if names is not None and "symbols" in params else params
            self._log.append(RequestRecord(time.monotonic(), now, method, path, logged, reply.status, weight))
        return reply

    def _decide(self, method, path, params, names, error, now) -> tuple[Reply, int]:
        if now < self._banned_until:
            return self._banned(now, self._banned_until - now), 0
        fault = self._take_response_fault(path)
        if fault is not None:
            return self._fault_reply(fault, path, params, names, error, now), 0
        route = self._routes.get(path) if method == "GET" else None
        if route is None:
            return json_reply(404, NOT_FOUND), 0
        weight = route[0](names, error)
        if now < self._retry_until:  # kept calling while a 429's Retry-After was pending: banned
            self._banned_until = now + self.ban_seconds
            return self._banned(now, self.ban_seconds), 0
        if self._used_at(now) + weight > self.weight_limit:
            self._retry_until = (math.floor(now / self.weight_window_s) + 1) * self.weight_window_s
            return self._too_much_weight(self._retry_until - now), 0
        self._used += weight  # charged even when the parameters then fail, as on Binance
        return route[1](params, names, error, now), weight

    server_errors, cdn_page = SERVER_ERRORS, CDN_PAGE

    def _fault_reply(self, fault: Fault, path, params, names, error, now) -> Reply:
        if fault.kind == "rate_limit":  # a real 429: calling again before Retry-After ends earns a ban
            self._retry_until = max(self._retry_until, now + fault.retry_after)
            return self._too_much_weight(fault.retry_after)
        if fault.kind == "ban":
            return self._banned(now, fault.retry_after)
        if fault.kind == "restricted":
            return json_reply(451, RESTRICTED)
        if fault.kind == "server_error":
            return self._server_error_reply(fault.status)
        if fault.kind == "invalid_json":
            return self._invalid_json_reply()
        route = self._routes.get(path)
        body = route[1](params, names, error, now).body if route else json.dumps(NOT_FOUND).encode()
        if fault.kind == "partial":  # valid JSON, but a list answer lacks its last element
            answer = json.loads(body)
            return Reply(200, json.dumps(answer[:-1] if isinstance(answer, list) else answer).encode())
        return Reply(200, body[: len(body) // 2])  # truncated: cut mid-JSON, Content-Length matching

    def _used_at(self, now: float) -> int:
        window = math.floor(now / self.weight_window_s)  # wall-clock minutes, as Binance counts
        if window != self._window:
            self._window, self._used = window, 0
        return self._used

    def _too_much_weight(self, retry_after: float) -> Reply:
        msg = TOO_MUCH_WEIGHT.format(self.weight_limit)
        return json_reply(
            429, {"code": -1003, "msg": msg}, **{"Retry-After": str(max(1, math.ceil(retry_after)))}
        )

    def _banned(self, now: float, seconds: float) -> Reply:
        msg = f"Way too much request weight used; IP banned until {int((now + seconds) * 1000)}."
        return json_reply(
            418, {"code": -1003, "msg": msg}, **{"Retry-After": str(max(1, math.ceil(seconds)))}
        )

    def _select(self, names: list[str] | None) -> list[SymbolState] | None:
        if names is None:
            return list(self._symbols.values())
        states = [self._symbols.get(name) for name in names]
        return None if None in states else states  # type: ignore[return-value]

    def _ticker(self, params, names, error, now) -> Reply:
        if error:
            return json_reply(400, error)
        if params.get("type", "FULL") not in ("FULL", "MINI"):
            return json_reply(400, ILLEGAL_TYPE)
        states = self._select(names)
        if states is None:  # one unknown name fails the whole request
            return json_reply(400, INVALID_SYMBOL)
        mono, now_ms, full = time.monotonic(), int(now * 1000), params.get("type", "FULL") == "FULL"
        for state in states:
            state.advance(self._rng, mono)
            state.series.observe(now, state.last)
        rows = [state.ticker(self._rng, now_ms, full) for state in states]
        return json_reply(200, rows[0] if "symbol" in params else rows)

    def _exchange_info(self, params, names, error, now) -> Reply:
        if error:
            return json_reply(400, error)
        states = self._select(names)
        if states is None:
            return json_reply(400, INVALID_SYMBOL)
        limits = [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": self.weight_limit,
            },
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        ]
        return json_reply(
            200,
            {
                "timezone": "UTC",
                "serverTime": int(now * 1000),
                "rateLimits": limits,
                "exchangeFilters": [],
                "symbols": [state.info() for state in states],
            },
        )

    def _klines(self, params, names, error, now) -> Reply:
        if error:
            return json_reply(400, error)
        for name in ("symbol", "interval"):
            if not params.get(name):
                return json_reply(400, {"code": -1102, "msg": MANDATORY.format(name)})
        state = self._symbols.get(params["symbol"])
        if state is None:
            return json_reply(400, INVALID_SYMBOL)
        interval = KLINE_INTERVALS.get(params["interval"])
        if interval is None:
            return json_reply(400, INVALID_INTERVAL)
        numbers: dict[str, int] = {}
        for name in ("startTime", "endTime", "limit"):
            if name in params:
                if not params[name].isdigit() or len(params[name]) > 20:
                    return json_reply(400, {"code": -1100, "msg": ILLEGAL.format(name, "^[0-9]{1,20}$")})
                numbers[name] = int(params[name])
        limit = numbers.get("limit", DEFAULT_KLINES)
        if not 1 <= limit <= MAX_KLINES:
            return json_reply(400, INVALID_LIMIT)
        start, end = numbers.get("startTime"), numbers.get("endTime")
        if start is not None and end is not None and start > end:
            return json_reply(400, START_AFTER_END)
        state.advance(self._rng, time.monotonic())
        state.series.observe(now, state.last)
        opens = _kline_opens(interval * 1000, int(now * 1000), start, end, limit)
        return json_reply(200, [state.kline(open_ms // 1000, interval, now) for open_ms in opens])

    # --- control routes (see SimulatorBase) -----------------------------------------------------------
    markets_route = "symbols"

    def _market_actions(self) -> dict[str, Callable[..., object]]:
        return {
            "add": self.add_symbol,
            "set_status": self.set_status,
            "remove": self.remove_symbol,
            "generate": self.add_generated_symbols,
        }

    def _market_listing(self) -> Any:
        return [
            {"symbol": s.symbol, "baseAsset": s.base, "quoteAsset": s.quote, "status": s.status}
            for s in self._symbols.values()
        ]

    def _control_not_found(self) -> Reply:
        return json_reply(404, NOT_FOUND)

    def _faults_view(self) -> dict[str, Any]:
        bad = {s.symbol: s.bad for s in self._symbols.values() if s.bad}
        return {**super()._faults_view(), "bad_tickers": bad}

    def _add_fault(self, data: dict[str, Any]) -> None:
        if data.get("fault") == "bad_ticker":
            self.set_bad_ticker(data["symbol"], data.get("kind"))
        else:
            super()._add_fault(data)


def main(argv: list[str] | None = None) -> None:
    parser = BinanceSimulator.command_line_parser(
        "Binance Spot REST simulator (public market data).", port=8001
    )
    parser.add_argument("--weight-limit", type=int, default=6000)
    parser.add_argument("--ban-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    sim = BinanceSimulator(args.host, args.port, args.seed, args.weight_limit, args.ban_seconds)
    sim.serve_until_interrupted(latency_ms=args.latency_ms)


if __name__ == "__main__":
    main()
