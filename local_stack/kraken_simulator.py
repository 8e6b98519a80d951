"""Kraken public REST simulator: AssetPairs, Ticker and OHLC over real HTTP, with switchable faults.

It speaks the protocol as shared/fixtures/kraken shows it: numbers as strings, results keyed by each pair's
canonical key even when asked by altname, errors in the body with HTTP 200 (one unknown name fails the
whole request), and about one public request a second before ``EGeneral:Too many requests``. The fetcher
and the end-to-end tests can then exercise Kraken's wire format offline. Stdlib only: the offline demo
stack runs it too.

Each market's candles come from local_stack.simulated_candles: a history around its starting price, the
interval in progress closing at its last price. The ticker's today and last-24-hours figures are computed
from its hourly candles, so the ticker, the candles and a rolling open read from them always agree.
"""

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from typing import Any
from urllib.parse import parse_qs

from local_stack.simulated_candles import Candle, CandleSeries
from local_stack.simulator_http import Fault, LoggedRequest, Reply, SimulatorBase, json_reply

HOUR_S = 3600
DAY_S = 24 * HOUR_S
CANDLES_KEPT = 720  # OHLC answers the last 720 candles of an interval at most, oldest first
TRADES_PER_DAY = 5_000  # a market's typical day
STEP_S = 0.25  # at most one random-walk step per market per 250 ms, however often it is read
STEP_SIGMA = 0.0005  # relative size of one step
MAX_CATCHUP_STEPS = 240  # after an idle gap, move like at most a minute of steps (one draw, bounded work)
REVERSION = 0.002  # per-step pull towards the starting price, so 24 h changes stay plausible
LOG_LIMIT = 10_000  # request records kept
STATUSES = {"online", "cancel_only", "post_only", "limit_only", "reduce_only", "maintenance"}
# Markets in these states accept no new trades, so their last price stands still.
HALTED_STATUSES = {"cancel_only", "maintenance"}
DEFAULT_PAIRS = [  # key, altname, wsname, base, quote, status, price
    ("XXBTZUSD", "XBTUSD", "XBT/USD", "XXBT", "ZUSD", "online", 67_000.0),
    ("XETHZUSD", "ETHUSD", "ETH/USD", "XETH", "ZUSD", "online", 3_500.0),
    ("XBTUSDT", "XBTUSDT", "XBT/USDT", "XXBT", "USDT", "online", 67_050.0),
    ("ETHUSDT", "ETHUSDT", "ETH/USDT", "XETH", "USDT", "online", 3_502.0),
    ("XDGUSD", "XDGUSD", "XDG/USD", "XXDG", "ZUSD", "online", 0.16),
    ("SOLUSD", "SOLUSD", "SOL/USD", "SOL", "ZUSD", "online", 150.0),
    ("USDTZUSD", "USDTUSD", "USDT/USD", "USDT", "ZUSD", "online", 1.0),
    ("XETHXXBT", "ETHXBT", "ETH/XBT", "XETH", "XXBT", "cancel_only", 0.052),
]
# Kraken's names for assets the service (and every other exchange) calls otherwise.
SERVICE_NAMES = {"XBT": "BTC", "XDG": "DOGE"}
OHLC_INTERVALS = {1, 5, 15, 30, 60, 240, 1440, 10080, 21600}  # minutes, what Kraken accepts (epoch-aligned)

UNKNOWN_PAIR = "EQuery:Unknown asset pair"
INVALID_ARGUMENTS = "EGeneral:Invalid arguments"
TOO_MANY_REQUESTS = "EGeneral:Too many requests"
UNKNOWN_METHOD = "EGeneral:Unknown method"
SERVICE_ERRORS = {"service_unavailable": "EService:Unavailable", "service_busy": "EService:Busy"}
CDN_PAGE = "<html><head><title>{0}</title></head><body><h1>{0}</h1><hr>cloudflare</body></html>"


def _price(x: float) -> str:
    return f"{x:.5f}"


def _amount(x: float) -> str:
    return f"{x:.8f}"


def _unprefixed(asset: str) -> str:
    """Kraken's short name for an asset: legacy names carry an X (crypto) or Z (fiat) prefix."""
    return asset[1:] if len(asset) == 4 and asset[0] in "XZ" else asset


@dataclass(frozen=True)
class RequestRecord(LoggedRequest):
    params: dict[str, Any]  # query parameters; `pair` split into a list of names
    status: int
    errors: list[str]  # the body's error list ([] for a success or a non-JSON answer)


@dataclass
class PairState:
    """One market: a random walk of the last price, and its candles."""

    key: str
    altname: str
    wsname: str
    base: str
    quote: str
    status: str
    anchor: float  # the starting price; the walk is pulled gently back towards it
    seed: InitVar[int]
    rng: InitVar[random.Random]
    tick: float = field(init=False)
    last: float = field(init=False)
    series: CandleSeries = field(init=False)  # its candles, named by the seed and the pair's key
    avg_trade_qty: float = field(init=False)
    last_qty: float = field(init=False)
    stepped_at: float = field(init=False)

    def __post_init__(self, seed: int, rng: random.Random) -> None:
        self.tick = max(1e-5, min(0.1, 10 ** (math.floor(math.log10(self.anchor)) - 5)))
        self.last = self._on_tick(self.anchor)
        self.avg_trade_qty = self.last_qty = rng.uniform(2_000, 20_000) / self.anchor
        daily_volume = self.avg_trade_qty * TRADES_PER_DAY
        self.series = CandleSeries(f"{seed}/{self.key}", self.anchor, daily_volume, TRADES_PER_DAY)
        self.stepped_at = time.monotonic()

    def _on_tick(self, x: float) -> float:
        return max(self.tick, round(round(x / self.tick) * self.tick, 5))

    def price_text(self, x: float) -> str:
        return _price(self._on_tick(x))

    def advance(self, rng: random.Random, now: float, mono: float) -> None:
        """Take the walk's steps since the last read; the candle in progress closes at the price."""
        elapsed = mono - self.stepped_at
        if elapsed >= STEP_S:
            self.stepped_at = mono
            if self.status not in HALTED_STATUSES:
                steps = min(elapsed / STEP_S, MAX_CATCHUP_STEPS)
                drift = -REVERSION * steps * math.log(self.last / self.anchor)
                moved = self.last * math.exp(rng.gauss(drift, STEP_SIGMA * math.sqrt(steps)))
                self.last = self._on_tick(moved)
                self.last_qty = self.avg_trade_qty * rng.uniform(0.5, 1.5)
        self.series.observe(now, self.last)

    def row(self, start: int, interval: int, now: float) -> list[Any]:
        """An OHLC entry: [time, open, high, low, close, vwap, volume, count], prices at the tick."""
        candle = self.series.candle(start, interval, now)
        prices = (candle.open, candle.high, candle.low, candle.close, candle.vwap)
        return [start, *map(self.price_text, prices), _amount(candle.volume), candle.trades]

    def ticker(self, now: float) -> dict[str, Any]:
        """Kraken's ticker entry: [today, last 24 h] figures from the hourly candles (the last 24 h: the
        hours since the one 24 h before this one), in the fixture's key order."""
        hour, midnight = int(now) // HOUR_S * HOUR_S, int(now) // DAY_S * DAY_S
        last_day = [self.series.candle(start, HOUR_S, now) for start in range(hour - DAY_S, hour + 1, HOUR_S)]
        today = [c for c in last_day if c.start >= midnight]

        def stats(candles: list[Candle]) -> tuple[float, float, int, float, float]:
            volume = sum(c.volume for c in candles)  # never 0: every minute has a trade
            vwap = sum(c.vwap * c.volume for c in candles) / volume
            high, low = max(c.high for c in candles), min(c.low for c in candles)
            return volume, vwap, sum(c.trades for c in candles), low, high

        (v0, p0, t0, l0, h0), (v1, p1, t1, l1, h1) = stats(today), stats(last_day)
        last = self.last
        return {
            "a": [_price(last + self.tick), "1", "1.000"],
            "b": [_price(last), "1", "1.000"],
            "c": [_price(last), _amount(self.last_qty)],
            "v": [_amount(v0), _amount(v1)],
            "p": [self.price_text(p0), self.price_text(p1)],
            "t": [t0, t1],
            "l": [self.price_text(l0), self.price_text(l1)],
            "h": [self.price_text(h0), self.price_text(h1)],
            "o": self.price_text(today[0].open),
        }

    def info(self) -> dict[str, Any]:
        decimals = max(0, -math.floor(math.log10(self.tick) + 1e-9))
        return {
            "altname": self.altname,
            "wsname": self.wsname,
            "aclass_base": "currency",
            "base": self.base,
            "aclass_quote": "currency",
            "quote": self.quote,
            "lot": "unit",
            "cost_decimals": 5,
            "pair_decimals": decimals,
            "lot_decimals": 8,
            "lot_multiplier": 1,
            "fees": [[0, 0.4], [10000, 0.35], [50000, 0.24]],
            "fees_maker": [[0, 0.25], [10000, 0.2], [50000, 0.14]],
            "fee_volume_currency": "ZUSD",
            "margin_call": 80,
            "margin_stop": 40,
            "ordermin": _amount(5 / self.anchor),
            "costmin": "0.5",
            "tick_size": f"{self.tick:.{decimals}f}",
            "status": self.status,
            "execution_venue": "international",
        }


class KrakenSimulator(SimulatorBase[RequestRecord]):
    """Kraken's public market-data endpoints on a loopback port; every knob is a method for tests."""

    thread_name = "kraken-simulator"
    response_faults = frozenset({"server_error", "invalid_json", "rate_limit", *SERVICE_ERRORS})

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        rate_limit_per_s: float | None = 1.0,
        burst: int = 3,
    ) -> None:
        """``rate_limit_per_s`` None turns the limit off; ``burst`` calls may come at once after a pause."""
        if (rate_limit_per_s is not None and rate_limit_per_s <= 0) or burst < 1:
            raise ValueError("rate_limit_per_s must be positive (or None) and burst at least 1")
        super().__init__(host, port, log_limit=LOG_LIMIT)
        self.rate_limit_per_s, self.burst = rate_limit_per_s, burst
        self.seed, self._rng = seed, random.Random(seed)
        self._pairs: dict[str, PairState] = {}
        # A token bucket: one token per public call, refilled at rate_limit_per_s up to `burst`.
        self._tokens, self._refilled_at = float(burst), time.monotonic()
        self._routes: dict[str, Callable[[dict[str, str], float], Reply]] = {
            "/0/public/AssetPairs": self._asset_pairs,
            "/0/public/Ticker": self._ticker,
            "/0/public/OHLC": self._ohlc,
        }
        for key, altname, wsname, base, quote, status, price in DEFAULT_PAIRS:
            self.add_pair(key, base, quote, altname=altname, wsname=wsname, status=status, price=price)

    # --- inspection and control ----------------------------------------------------------------------
    def reset_limits(self) -> None:
        """Refill the rate limiter's bucket."""
        with self._lock:
            self._tokens, self._refilled_at = float(self.burst), time.monotonic()

    def _fault_options(self, kind: str, status: int | None) -> tuple[int, float]:
        """``status``: the 5xx of a server_error (503 by default); 200 (default) or 429 for a rate_limit."""
        if status is None:
            status = 503 if kind == "server_error" else 200
        if kind == "server_error" and not 500 <= status <= 599:
            raise ValueError("a server_error status must be a 5xx")
        if kind == "rate_limit" and status not in (200, 429):
            raise ValueError("a rate_limit status must be 200 or 429")
        return status, 1.0

    @property
    def pairs(self) -> list[str]:
        """Canonical keys of the listed pairs."""
        with self._lock:
            return list(self._pairs)

    def add_pair(
        self,
        key: str,
        base: str,
        quote: str,
        *,
        altname: str | None = None,
        wsname: str | None = None,
        status: str = "online",
        price: float = 1.0,
    ) -> None:
        """List a pair; ``base``/``quote`` are Kraken asset names (XXBT, ZUSD, SOL)."""
        short_base, short_quote = _unprefixed(base), _unprefixed(quote)
        altname = altname or short_base + short_quote
        wsname = wsname or f"{short_base}/{short_quote}"
        if status not in STATUSES or not 0 < price < 1e12 or not key.isalnum() or not altname.isalnum():
            raise ValueError(f"bad pair {key!r}/{altname!r}, status {status!r} or price {price!r}")
        with self._lock:
            if self._find(key) or self._find(altname):
                raise ValueError(f"{key} or {altname} is listed already")
            state = PairState(key, altname, wsname, base, quote, status, float(price), self.seed, self._rng)
            self._pairs[key] = state

    def traded_pairs(self) -> list[str]:
        with self._lock:
            return [
                "/".join(SERVICE_NAMES.get(asset, asset) for asset in state.wsname.split("/"))
                for state in self._pairs.values()
                if state.status == "online"
            ]

    def remove_pair(self, name: str) -> None:
        with self._lock:
            del self._pairs[self._listed(name).key]

    def set_status(self, name: str, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; known: {sorted(STATUSES)}")
        with self._lock:
            self._listed(name).status = status

    def _find(self, name: str) -> PairState | None:
        """A pair by canonical key or altname, as Kraken accepts either."""
        state = self._pairs.get(name)
        return state or next((s for s in self._pairs.values() if s.altname == name), None)

    def _listed(self, name: str) -> PairState:
        state = self._find(name)
        if state is None:
            raise KeyError(name)
        return state

    # --- request handling ----------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: str = "", body: bytes = b"") -> Reply:
        if path.startswith("/_simulator/"):
            return self._control(method, path, body)
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        self._hold_for_delay_faults(path)
        now = time.time()
        with self._lock:
            reply = self._decide(method, path, params, now)
            try:
                errors = json.loads(reply.body).get("error", []) if reply.status != 404 else []
            except (ValueError, AttributeError):
                errors = []
            logged: dict[str, Any] = dict(params)
            if "pair" in params:
                logged["pair"] = params["pair"].split(",")
            self._log.append(RequestRecord(time.monotonic(), now, method, path, logged, reply.status, errors))
        return reply

    def _decide(self, method: str, path: str, params: dict[str, str], now: float) -> Reply:
        route = self._routes.get(path) if method in ("GET", "POST") else None
        if route is None:
            return json_reply(404, {"error": [UNKNOWN_METHOD]})
        fault = self._take_response_fault(path)
        if fault is not None:
            return self._fault_reply(fault)
        if not self._take_token():
            return json_reply(200, {"error": [TOO_MANY_REQUESTS], "result": {}})
        return route(params, now)

    def _take_token(self) -> bool:
        if self.rate_limit_per_s is None:
            return True
        mono = time.monotonic()
        elapsed, self._refilled_at = mono - self._refilled_at, mono
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate_limit_per_s)
        if self._tokens < 1:
            return False  # a refused call costs nothing, so a client that waits gets through
        self._tokens -= 1
        return True

    cdn_page = CDN_PAGE

    def _fault_reply(self, fault: Fault) -> Reply:
        if fault.kind == "server_error":  # Kraken's CDN answers these as HTML pages
            return self._cdn_page_reply(fault.status, f"{fault.status} Error")
        if fault.kind == "invalid_json":
            return self._invalid_json_reply()
        if fault.kind == "rate_limit":
            return json_reply(fault.status, {"error": [TOO_MANY_REQUESTS], "result": {}})
        return json_reply(200, {"error": [SERVICE_ERRORS[fault.kind]], "result": {}})

    def _select(self, params: dict[str, str]) -> list[PairState] | None:
        """The pairs named in ``pair`` (all when absent); None when any name is unknown."""
        if not params.get("pair"):
            return list(self._pairs.values())
        states = [self._find(name) for name in params["pair"].split(",")]
        return None if None in states else states  # type: ignore[return-value]

    def _advance(self, states: list[PairState], now: float) -> None:
        mono = time.monotonic()
        for state in states:
            state.advance(self._rng, now, mono)

    def _asset_pairs(self, params: dict[str, str], now: float) -> Reply:
        states = self._select(params)
        if states is None:
            return json_reply(200, {"error": [UNKNOWN_PAIR], "result": {}})
        return json_reply(200, {"error": [], "result": {s.key: s.info() for s in states}})

    def _ticker(self, params: dict[str, str], now: float) -> Reply:
        states = self._select(params)
        if states is None:  # one unknown name fails the whole request
            return json_reply(200, {"error": [UNKNOWN_PAIR], "result": {}})
        self._advance(states, now)
        return json_reply(200, {"error": [], "result": {s.key: s.ticker(now) for s in states}})

    def _ohlc(self, params: dict[str, str], now: float) -> Reply:
        """The last 720 candles of ``interval`` minutes (1 by default) at most, oldest first, the last one
        in progress; only those after ``since`` (s) when given. ``last`` is the newest closed one's time,
        the cursor for ``since``."""
        interval, since = params.get("interval", "1"), params.get("since") or "0"
        if (
            not params.get("pair")
            or "," in params["pair"]
            or not interval.isdigit()
            or int(interval) not in OHLC_INTERVALS
            or not since.isdigit()
        ):
            return json_reply(200, {"error": [INVALID_ARGUMENTS], "result": {}})
        state = self._find(params["pair"])
        if state is None:
            return json_reply(200, {"error": [UNKNOWN_PAIR], "result": {}})
        self._advance([state], now)
        step = int(interval) * 60
        current = int(now) // step * step
        first = max(current - (CANDLES_KEPT - 1) * step, (int(since) // step + 1) * step)
        rows = [state.row(start, step, now) for start in range(first, current + step, step)]
        return json_reply(200, {"error": [], "result": {state.key: rows, "last": current - step}})

    # --- control routes (see SimulatorBase) -----------------------------------------------------------
    markets_route = "pairs"

    def _market_actions(self) -> dict[str, Callable[..., object]]:
        return {"add": self.add_pair, "set_status": self.set_status, "remove": self.remove_pair}

    def _market_listing(self) -> Any:
        return {s.key: {"altname": s.altname, "status": s.status} for s in self._pairs.values()}

    def _control_not_found(self) -> Reply:
        return json_reply(404, {"error": [UNKNOWN_METHOD]})

    def _control_error(self, message: str) -> Reply:
        return json_reply(400, {"error": [message]})  # Kraken reports errors as a list


def main(argv: list[str] | None = None) -> None:
    parser = KrakenSimulator.command_line_parser("Kraken public REST simulator (market data).", port=8003)
    parser.add_argument("--rate-limit-per-s", type=float, default=1.0, help="0 turns the limit off")
    parser.add_argument("--burst", type=int, default=3)
    args = parser.parse_args(argv)
    rate = args.rate_limit_per_s or None
    sim = KrakenSimulator(args.host, args.port, args.seed, rate, args.burst)
    sim.serve_until_interrupted(latency_ms=args.latency_ms)


if __name__ == "__main__":
    main()
