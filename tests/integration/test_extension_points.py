"""Where coming features land: a new exchange is one module and one registry line; a per-tick
consumer is one function handed the written tick. Real parts: a toy exchange over HTTP (through
the shared transport and its error mapping), the Binance simulator, a real redis-server and moto.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from fetcher.deps import Fetcher
from fetcher.exchanges.base import (
    ExchangeError,
    ExchangeSpec,
    FetchResult,
    Limits,
    ListingEntry,
    change_24h,
)
from fetcher.exchanges.registry import REGISTRY
from fetcher.exchanges.transport import Transport
from fetcher.loop import LoopSummary, run_slot
from fetcher.tick import WrittenTick
from local_stack.binance_simulator import BinanceSimulator
from local_stack.lambda_context import LocalLambdaContext
from local_stack.simulator_http import Reply, SimulatorServer, json_reply, stop_serving
from market_data import cache
from market_data.clock import now_ms
from market_data.models import Ticker
from prices_api.handler import lambda_handler as prices_handler
from tests.support import load_event

_slots = itertools.count(70_000)


class ToyServer:
    """An exchange of its own protocol: ``/markets`` lists, ``/quotes?names=A,B`` prices; it can fail."""

    def __init__(self) -> None:
        self.markets = {
            "TOYUSD": {"base": "TOY", "quote": "USD", "open": True, "last": "2.5", "open24": "2.0"}
        }
        self.failing = False
        self.asked: list[str] = []
        self._server = SimulatorServer(("127.0.0.1", 0), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})

    def handle(self, method: str, path: str, query: str = "", body: bytes = b"") -> Reply:
        self.asked.append(path)
        if self.failing:
            return json_reply(503, {"problem": "maintenance"})
        if path == "/markets":
            return json_reply(200, {name: {k: v for k, v in m.items() if k in ("base", "quote", "open")}
                                    for name, m in self.markets.items()})  # fmt: skip
        if path == "/quotes":
            names = parse_qs(query).get("names", [""])[0].split(",")
            return json_reply(200, {name: self.markets[name] for name in names if name in self.markets})
        return json_reply(404, {"problem": f"no route {path}"})

    def __enter__(self) -> ToyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        stop_serving(self._server, self._thread)

    @property
    def base_url(self) -> str:
        return self._server.base_url


class ToyExchange:
    """All a new exchange has to say: its listing, how to fetch its share, and its limits."""

    name = "toy"

    def __init__(self, http: httpx.Client, base_url: str) -> None:
        self._transport = Transport(
            http,
            base_url,
            default_retry_after_s=1,
            describe=lambda body: body.get("problem") if isinstance(body, dict) else None,
        )

    def listing(self) -> dict[str, ListingEntry]:
        markets = self._transport.get("/markets")
        return {
            f"{m['base']}/{m['quote']}": ListingEntry(
                name, m["base"], m["quote"], "open" if m["open"] else "closed", m["open"]
            )
            for name, m in markets.items()
        }

    def fetch(self, routes: Mapping[str, str], *, deadline: float) -> FetchResult:
        result = FetchResult(self.name)
        result.requests += 1
        try:
            quotes = self._transport.get("/quotes", {"names": ",".join(routes.values())})
        except ExchangeError as exc:
            result.failed(exc)
            for pair in routes:
                result.missing[pair] = f"exchange error: {exc.kind}"
            return result
        fetched_at = now_ms()
        for pair, name in routes.items():
            quote = quotes[name]
            price = float(quote["last"])
            result.tickers[pair] = Ticker(
                pair=pair, price=price, volume=1.0, quoteVolume=price, timestamp=fetched_at,
                fetchedAt=fetched_at, change24h=change_24h(price, float(quote["open24"])), high24h=price,
                low24h=price, exchange=self.name, symbol=name,
            )  # fmt: skip
        return result

    def limits(self, now: int) -> Limits:
        return Limits()


@pytest.fixture
def toy(fetcher_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[ToyServer]:
    with ToyServer() as server:
        # The one registry line a new exchange needs, and its base URL as any exchange's.
        monkeypatch.setitem(
            REGISTRY, "toy", ExchangeSpec("toy", server.base_url, lambda c: ToyExchange(c.http, c.base_url))
        )
        monkeypatch.setenv("EXCHANGES", '["binance","toy"]')
        monkeypatch.setenv("TRADING_PAIRS", '["BTC/USDT","TOY/USD"]')
        yield server


def tick(container: Fetcher) -> LoopSummary:
    summary = LoopSummary()
    run_slot(container, next(_slots), "extension-test", summary)
    assert summary.failed == 0
    return summary


def read(path: str, **query: str) -> dict[str, Any]:
    event = load_event("prices_get.json" if path == "prices" else "health_get.json")
    if query:
        event = {
            **event,
            "queryStringParameters": query,
            "rawQueryString": "&".join(f"{k}={v}" for k, v in query.items()),
        }
    return json.loads(prices_handler(event, LocalLambdaContext("prices", 6))["body"])


def test_a_toy_exchange_defined_here_serves_the_pair_only_it_lists(
    toy: ToyServer, simulator: BinanceSimulator, make_container: Callable[..., Fetcher]
) -> None:
    # Given an exchange that is not part of the service, registered with one line
    container = make_container()

    tick(container)

    prices = read("prices", pairs="BTC/USDT,TOY/USD")
    assert (prices["TOY/USD"]["exchange"], prices["TOY/USD"]["symbol"]) == ("toy", "TOYUSD")
    assert prices["TOY/USD"]["price"] == 2.5 and prices["TOY/USD"]["change24h"] == 25.0
    assert prices["BTC/USDT"]["exchange"] == "binance"  # the first exchange keeps what it lists
    health = read("health")
    assert health["fetcher"]["exchanges"]["toy"]["pairs"] == ["TOY/USD"]
    assert health["fetcher"]["pairSources"]["TOY/USD"] == {
        "exchange": "toy",
        "symbol": "TOYUSD",
        "preferred": True,
    }

    # When the toy exchange fails, its errors are counted by the shared transport's kinds
    toy.failing = True
    tick(container)

    health = read("health")
    assert health["fetcher"]["exchanges"]["toy"]["lastError"].startswith("http_5xx")
    assert health["fetcher"]["errorsByKind"]["http_5xx"] == 1
    assert health["fetcher"]["missingPairs"]["TOY/USD"] == "exchange error: http_5xx"
    assert read("prices", pairs="TOY/USD")["TOY/USD"]["price"] == 2.5  # the last good price stays


def test_a_consumer_added_after_persist_gets_each_written_tick_and_cannot_break_it(
    simulator: BinanceSimulator, make_container: Callable[..., Fetcher]
) -> None:
    container = make_container()
    seen: list[WrittenTick] = []

    def broken(tick: WrittenTick) -> None:
        raise RuntimeError("a consumer's bug")

    container.deps.consumers.extend([broken, seen.append])

    tick(container)
    tick(container)

    assert len(seen) == 2 and seen[0].slot < seen[1].slot
    last = seen[-1]
    assert last.cache_written and set(last.tickers) == {"BTC/USDT", "ETH/USDT"} == set(last.listed)
    # What the consumer got is what readers see: it runs after the write
    cached = cache.read_prices(container.deps.redis, ["BTC/USDT"]).tickers["BTC/USDT"]
    assert json.loads(cached)["price"] == last.tickers["BTC/USDT"].price


def test_an_exchange_the_registry_does_not_know_stops_the_fetcher_at_start_up(
    fetcher_env: dict[str, str], make_container: Callable[..., Fetcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    from market_data.config import ConfigurationError

    with pytest.raises(ConfigurationError, match="unknown exchange 'toy'"):
        make_container(EXCHANGES='["binance","toy"]')
