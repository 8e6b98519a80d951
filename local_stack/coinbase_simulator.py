"""Coinbase Exchange REST simulator: the public market-data endpoints over real HTTP, with switchable faults.

It speaks the protocol as shared/fixtures/coinbase shows it (numbers as strings, ISO 8601 times with
microseconds, ``{"message": "NotFound"}`` with 404 for an unknown product, 429 ``Public rate limit
exceeded`` beyond about 10 requests a second, no batch endpoint), so the Coinbase adapter and the
fetcher can be exercised on the real wire format offline. Candles come from local_stack.simulated_candles:
each product's history around its starting price, the bucket in progress closing at the ticker's price.
Stdlib only: the offline demo stack runs it.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

from local_stack.simulated_candles import CandleSeries
from local_stack.simulator_http import Fault, LoggedRequest, Reply, SimulatorBase, json_reply

STEP_S = 0.25  # at most one random-walk step per product per 250 ms, however often it is read
STEP_SIGMA = 0.0005  # relative size of one step: small, like real ticks, yet visible at the increment
MAX_CATCHUP_STEPS = 240  # after an idle gap, move like at most a minute of steps (one draw, bounded work)
REVERSION = 0.002  # per-step pull towards the starting price, so 24 h changes stay plausible in long demos
RATE_WINDOW_S = 1.0  # Coinbase's public limit is counted per second
LOG_LIMIT = 10_000  # request records kept
STATUSES = {"online", "offline", "delisted"}
PRODUCT_ID_RE = re.compile(r"[A-Z0-9]{1,12}-[A-Z0-9]{1,12}")
DEFAULT_PRODUCTS = [  # (id, base, quote, status, trading_disabled, starting price)
    ("BTC-USD", "BTC", "USD", "online", False, 67_000.0),
    ("ETH-USD", "ETH", "USD", "online", False, 3_500.0),
    ("SOL-USD", "SOL", "USD", "online", False, 150.0),
    ("BTC-USDT", "BTC", "USDT", "online", False, 67_010.0),
    ("ETH-USDT", "ETH", "USDT", "online", False, 3_501.0),
    # Listed but not servable, one for each flag the adapter must read.
    ("ADA-BTC", "ADA", "BTC", "online", True, 0.0000068),
    ("DOGE-BTC", "DOGE", "BTC", "offline", False, 0.0000024),
]

NOT_FOUND = {"message": "NotFound"}
RATE_LIMITED = {"message": "Public rate limit exceeded"}
GRANULARITIES = {60, 300, 900, 3600, 21600, 86400}  # s, as documented; any other is refused
MAX_CANDLES = 300  # buckets one request may span
UNSUPPORTED_GRANULARITY = {"message": "Unsupported granularity"}
TOO_MANY_CANDLES = {
    "message": "granularity too small for the requested time range. Count of aggregations requested "
    "exceeds 300"
}
SERVER_ERRORS = {  # Coinbase answers 500/503 itself; 502/504 come from its CDN as HTML
    500: {"message": "Internal server error"},
    503: {"message": "Service Unavailable"},
}
CDN_PAGE = (
    "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center><hr>cloudflare</body></html>"
)


def _iso(wall_time: float) -> str:
    """``2024-03-13T11:10:41.270099Z``: UTC, microseconds, ``Z``, as Coinbase writes times."""
    return datetime.fromtimestamp(wall_time, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _increment(price: float) -> float:
    """A quote increment giving about five significant digits, between 0.01 and 1e-8."""
    return max(1e-8, min(0.01, 10 ** (math.floor(math.log10(price)) - 4)))


def _epoch_s(text: str) -> float | None:
    """A candles ``start`` or ``end``: ISO 8601 (UTC when it names no zone) or epoch seconds; None when
    it is neither."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            seconds = float(text)
        except ValueError:
            return None
        return seconds if math.isfinite(seconds) else None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _decimals(increment: float) -> int:
    return max(0, -math.floor(math.log10(increment) + 1e-9))


def _f8(x: float) -> str:
    return f"{x:.8f}"


@dataclass(frozen=True)
class RequestRecord(LoggedRequest):
    params: dict[str, str]  # query parameters
    status: int


@dataclass
class ProductState:
    """One market: a random walk of the last price, with 24 h stats kept consistent with it."""

    product_id: str
    base: str
    quote: str
    status: str
    trading_disabled: bool
    anchor: float  # the starting price; the walk is pulled gently back towards it
    rng: InitVar[random.Random]
    seed: InitVar[int]
    quote_increment: float = field(init=False)
    last: float = field(init=False)
    open: float = field(init=False)  # the rolling 24 h open
    high: float = field(init=False)
    low: float = field(init=False)
    size: float = field(init=False)  # of the last trade
    volume: float = field(init=False)  # 24 h, base units
    volume_30day: float = field(init=False)
    trade_id: int = field(init=False)
    traded_at: float = field(init=False)  # wall time of the last trade: the ticker's `time`
    stepped_at: float = field(init=False)
    series: CandleSeries = field(init=False)  # its candles, named by the seed and the product

    def __post_init__(self, rng: random.Random, seed: int) -> None:
        self.quote_increment = increment = _increment(self.anchor)
        self.last = self._to_increment(self.anchor)
        self.open = self._to_increment(self.anchor * (1 + rng.uniform(-0.03, 0.03)))
        self.high = self._to_increment(max(self.open, self.last) * (1 + rng.uniform(0.002, 0.02)))
        self.low = max(
            increment, self._to_increment(min(self.open, self.last) * (1 - rng.uniform(0.002, 0.02)))
        )
        self.volume = rng.uniform(1e5, 5e8) / self.anchor
        self.volume_30day = self.volume * rng.uniform(20, 40)
        self.size = self.volume / rng.randint(50_000, 2_000_000)
        self.trade_id = rng.randint(10**7, 10**9)
        self.traded_at = time.time() - rng.uniform(0, 2)
        self.stepped_at = time.monotonic()
        trades = round(self.volume / self.size)
        self.series = CandleSeries(f"{seed}/{self.product_id}", self.anchor, self.volume, trades)

    @property
    def trading(self) -> bool:
        return self.status == "online" and not self.trading_disabled

    def _to_increment(self, x: float) -> float:
        return max(self.quote_increment, round(x / self.quote_increment) * self.quote_increment)

    def advance(self, rng: random.Random, mono: float, wall_time: float) -> None:
        elapsed = mono - self.stepped_at
        if elapsed < STEP_S:
            return
        self.stepped_at = mono
        if not self.trading:  # an offline or disabled market does not trade
            return
        steps = min(elapsed / STEP_S, MAX_CATCHUP_STEPS)
        drift = -REVERSION * steps * math.log(self.last / self.anchor)
        moved = self.last * math.exp(rng.gauss(drift, STEP_SIGMA * math.sqrt(steps)))
        self.last = self._to_increment(moved)
        self.high, self.low = max(self.high, self.last), min(self.low, self.last)
        trades = rng.randint(1, 20)
        self.size = self.volume / 1e6 * rng.uniform(0.1, 5)
        traded = self.size * trades
        self.volume += traded
        self.volume_30day += traded
        self.trade_id += trades
        self.traded_at = wall_time

    def price_text(self, x: float) -> str:
        """A price at the quote increment without trailing zeros, as the ticker fixture's "73367.8"."""
        text = f"{x:.{_decimals(self.quote_increment)}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text

    def ticker(self) -> dict[str, Any]:
        spread = self.quote_increment * 3
        return {  # the fixture's keys, in its order
            "ask": self.price_text(self.last + spread),
            "bid": self.price_text(max(self.quote_increment, self.last - spread)),
            "volume": _f8(self.volume),
            "trade_id": str(self.trade_id),
            "price": self.price_text(self.last),
            "size": _f8(self.size),
            "time": _iso(self.traded_at),
            "rfq_volume": _f8(self.volume * 0.005),
        }

    def stats(self) -> dict[str, Any]:
        return {
            "high": _f8(self.high),
            "last": _f8(self.last),
            "low": _f8(self.low),
            "open": _f8(self.open),
            "volume": _f8(self.volume),
            "volume_30day": _f8(self.volume_30day),
        }

    def candle(self, start: int, granularity: int, now: float) -> list[int | float]:
        """A /candles row: [time, low, high, open, close, volume], prices at the quote increment."""
        candle = self.series.candle(start, granularity, now)
        digits = _decimals(self.quote_increment)
        prices = (candle.low, candle.high, candle.open, candle.close)
        return [start, *(round(price, digits) for price in prices), round(candle.volume, 8)]

    def product(self) -> dict[str, Any]:
        """A /products entry: the documented fields, in the documented order (fixtures/coinbase)."""
        return {
            "id": self.product_id,
            "base_currency": self.base,
            "quote_currency": self.quote,
            "base_increment": "0.00000001",
            "quote_increment": f"{self.quote_increment:.{_decimals(self.quote_increment)}f}",
            "display_name": self.product_id,
            "status": self.status,
            "margin_enabled": False,
            "status_message": "",
            "min_market_funds": "1",
            "post_only": False,
            "limit_only": False,
            "cancel_only": False,
            "auction_mode": False,
            "type": "spot",
            "fx_stablecoin": False,
            "max_slippage_percentage": "0.03000000",
            "trading_disabled": self.trading_disabled,
        }


class CoinbaseSimulator(SimulatorBase[RequestRecord]):
    """`with CoinbaseSimulator() as sim: httpx.get(sim.base_url + "/products/BTC-USD/ticker")`.

    Control over HTTP (not rate limited, not logged): POST /_simulator/faults {"fault": kind, "path",
    "count", ...set_fault's keywords}; GET|DELETE /_simulator/faults; GET|DELETE /_simulator/requests;
    GET /_simulator/products; POST /_simulator/products {"action": "add" | "remove" | "set_status",
    ...the method's keywords}; POST /_simulator/reset.
    """

    thread_name = "coinbase-simulator"
    response_faults = frozenset({"rate_limit", "server_error", "invalid_json"})

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, seed: int = 0, rate_limit_per_s: int | None = 10
    ) -> None:
        super().__init__(host, port, log_limit=LOG_LIMIT)
        self.rate_limit_per_s = rate_limit_per_s  # None: no limit
        self.seed, self._rng = seed, random.Random(seed)
        self._products: dict[str, ProductState] = {}
        self._recent: deque[float] = deque()  # monotonic times of the requests counted in the last second
        for product_id, base, quote, status, trading_disabled, price in DEFAULT_PRODUCTS:
            self.add_product(product_id, base, quote, price, status=status, trading_disabled=trading_disabled)

    # --- inspection and control ----------------------------------------------------------------------
    def reset_limits(self) -> None:
        """Forget the requests counted against the per-second limit."""
        with self._lock:
            self._recent.clear()

    @property
    def products(self) -> list[str]:
        with self._lock:
            return list(self._products)

    def add_product(
        self,
        product_id: str,
        base: str,
        quote: str,
        price: float = 1.0,
        *,
        status: str = "online",
        trading_disabled: bool = False,
    ) -> None:
        if (
            not PRODUCT_ID_RE.fullmatch(product_id)
            or product_id != f"{base}-{quote}"
            or status not in STATUSES
            or not 1e-8 <= price < 1e12
        ):
            raise ValueError(
                f"bad product {product_id!r} ({base}/{quote}), status {status!r} or price {price!r}"
            )
        with self._lock:
            if product_id in self._products:
                raise ValueError(f"{product_id} exists")
            self._products[product_id] = ProductState(
                product_id, base, quote, status, trading_disabled, float(price), self._rng, self.seed
            )

    def traded_pairs(self) -> list[str]:
        with self._lock:
            return [f"{s.base}/{s.quote}" for s in self._products.values() if s.trading]

    def remove_product(self, product_id: str) -> None:
        with self._lock:
            del self._products[product_id]

    def set_status(self, product_id: str, status: str, trading_disabled: bool | None = None) -> None:
        """Set a product's listing status, and its trading_disabled flag when given."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; known: {sorted(STATUSES)}")
        with self._lock:
            state = self._products[product_id]
            state.status = status
            if trading_disabled is not None:
                state.trading_disabled = trading_disabled

    # --- request handling ----------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: str = "", body: bytes = b"") -> Reply:
        if path.startswith("/_simulator/"):
            return self._control(method, path, body)
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        self._hold_for_delay_faults(path)
        wall_time, mono = time.time(), time.monotonic()
        with self._lock:
            reply = self._decide(method, path, params, wall_time, mono)
            self._log.append(RequestRecord(mono, wall_time, method, path, params, reply.status))
        return reply

    def _decide(self, method: str, path: str, params: dict[str, str], wall_time: float, mono: float) -> Reply:
        fault = self._take_response_fault(path)
        if fault is not None:
            return self._fault_reply(fault)
        if not self._admit(mono):
            return json_reply(429, RATE_LIMITED)
        if method != "GET":
            return json_reply(404, NOT_FOUND)
        if path == "/products":
            return json_reply(200, [state.product() for state in self._products.values()])
        parts = path.split("/")  # "", "products", id[, endpoint]
        if len(parts) not in (3, 4) or parts[1] != "products":
            return json_reply(404, NOT_FOUND)
        state = self._products.get(unquote(parts[2]))
        endpoint = parts[3] if len(parts) == 4 else None
        if state is None or endpoint not in (None, "ticker", "stats", "candles"):
            return json_reply(404, NOT_FOUND)
        if endpoint is None:
            return json_reply(200, state.product())
        state.advance(self._rng, mono, wall_time)
        state.series.observe(wall_time, state.last)
        if endpoint == "candles":
            return self._candles(state, params, wall_time)
        return json_reply(200, state.ticker() if endpoint == "ticker" else state.stats())

    def _candles(self, state: ProductState, params: dict[str, str], now: float) -> Reply:
        """Buckets newest first: those holding any of [start, end) (the first may begin before start),
        at most 300; without both start and end (one alone is ignored, as documented) the newest 300.
        None after the one in progress."""
        granularity = params.get("granularity", "60")  # minutes when not asked for
        if not granularity.isdigit() or int(granularity) not in GRANULARITIES:
            return json_reply(400, UNSUPPORTED_GRANULARITY)
        step = int(granularity)
        newest = int(now) // step * step
        first = newest - (MAX_CANDLES - 1) * step
        if params.get("start") and params.get("end"):
            start, end = _epoch_s(params["start"]), _epoch_s(params["end"])
            if start is None or end is None:  # these two messages are the simulator's: none is documented
                return json_reply(400, {"message": f"Invalid {'start' if start is None else 'end'}"})
            if start > end:
                return json_reply(400, {"message": "start must be before end"})
            first = math.floor(start / step) * step
            count = math.ceil((end - first) / step)
            if count > MAX_CANDLES:
                return json_reply(400, TOO_MANY_CANDLES)
            newest = min(newest, first + (count - 1) * step)
        return json_reply(200, [state.candle(t, step, now) for t in range(newest, first - 1, -step)])

    def _admit(self, mono: float) -> bool:
        """Count a request against the limit over the last second; False when it is over."""
        if self.rate_limit_per_s is None:
            return True
        while self._recent and self._recent[0] <= mono - RATE_WINDOW_S:
            self._recent.popleft()
        if len(self._recent) >= self.rate_limit_per_s:
            return False  # refused requests are not counted: a client that waits a second recovers
        self._recent.append(mono)
        return True

    server_errors, cdn_page = SERVER_ERRORS, CDN_PAGE

    def _fault_reply(self, fault: Fault) -> Reply:
        if fault.kind == "rate_limit":
            return json_reply(429, RATE_LIMITED)
        if fault.kind == "server_error":
            return self._server_error_reply(fault.status)
        return self._invalid_json_reply()

    # --- control routes (see SimulatorBase) -----------------------------------------------------------
    markets_route = "products"

    def _market_actions(self) -> dict[str, Callable[..., object]]:
        return {"add": self.add_product, "remove": self.remove_product, "set_status": self.set_status}

    def _market_listing(self) -> Any:
        return [state.product() for state in self._products.values()]

    def _control_not_found(self) -> Reply:
        return json_reply(404, NOT_FOUND)


def main(argv: list[str] | None = None) -> None:
    parser = CoinbaseSimulator.command_line_parser(
        "Coinbase Exchange REST simulator (public market data).", port=8002
    )
    parser.add_argument("--rate-limit-per-s", type=int, default=10, help="0: no limit")
    args = parser.parse_args(argv)
    sim = CoinbaseSimulator(args.host, args.port, args.seed, args.rate_limit_per_s or None)
    sim.serve_until_interrupted(latency_ms=args.latency_ms)


if __name__ == "__main__":
    main()
