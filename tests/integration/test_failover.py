"""Three exchanges over real HTTP: each pair served by the first that lists it, failover and return.

Binance, Coinbase and Kraken simulators, a real redis-server and moto; the fetcher built as a
container builds it, with the default EXCHANGES order and the default pairs.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fetcher.deps import Fetcher
from fetcher.exchanges.kraken import OPEN_RETRY_MS, KrakenExchange
from fetcher.loop import LoopSummary, run_slot
from local_stack.binance_simulator import BinanceSimulator
from local_stack.coinbase_simulator import CoinbaseSimulator
from local_stack.kraken_simulator import KrakenSimulator
from local_stack.lambda_context import LocalLambdaContext
from market_data import cache, store
from market_data.clock import now_ms
from market_data.models import PairRecord
from prices_api.handler import lambda_handler as prices_handler
from tests.support import load_event, submitted

DEFAULT_PAIRS = ["BTC/USD", "BTC/USDT", "ETH/USD", "ETH/USDT"]
BINANCE_TICKER = "/api/v3/ticker/24hr"
KRAKEN_TICKER = "/0/public/Ticker"
_slots = itertools.count(20_000)


@pytest.fixture
def exchanges(
    fetcher_env: dict[str, str], simulator: BinanceSimulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[BinanceSimulator, CoinbaseSimulator, KrakenSimulator]]:
    """The Binance simulator every fetcher test has, with Coinbase and Kraken after it in EXCHANGES."""
    with CoinbaseSimulator(seed=3) as coinbase, KrakenSimulator(seed=3) as kraken:
        monkeypatch.setenv("EXCHANGES", '["binance","coinbase","kraken"]')
        monkeypatch.setenv("TRADING_PAIRS", json.dumps(DEFAULT_PAIRS))
        monkeypatch.setenv("COINBASE_API_BASE_URL", coinbase.base_url)
        monkeypatch.setenv("KRAKEN_API_BASE_URL", kraken.base_url)
        yield simulator, coinbase, kraken


@pytest.fixture
def container(exchanges: object, make_container: Callable[..., Fetcher]) -> Fetcher:
    return make_container()


def tick(container: Fetcher) -> None:
    summary = LoopSummary()
    run_slot(container, next(_slots), "failover-test", summary)
    assert summary.failed == 0


def prices(pairs: str) -> dict[str, Any]:
    event = load_event("prices_get.json")
    event["queryStringParameters"] = {"pairs": pairs}
    response = prices_handler(event, LocalLambdaContext("prices", 6))
    assert response["statusCode"] == 200, response
    return json.loads(response["body"])  # type: ignore[no-any-return]


def health() -> dict[str, Any]:
    return json.loads(prices_handler(load_event("health_get.json"), LocalLambdaContext("prices", 6))["body"])  # type: ignore[no-any-return]


def sources(body: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {pair: (entry["exchange"], entry["symbol"]) for pair, entry in body.items()}


def record(container: Fetcher, pair: str) -> PairRecord:
    found = store.get_record(container.deps.table, pair)
    assert found is not None
    return found


def end_holds(container: Fetcher) -> None:
    """The holds' time passes (30 s at first): a held pair is routed to its first source again."""
    kept = container.deps.redis.hgetall(cache.FAILURE_HOLDS)
    container.deps.redis.hset(
        cache.FAILURE_HOLDS, mapping={key: b"0," + value.split(b",")[1] for key, value in kept.items()}
    )


def test_each_default_pair_is_served_by_the_first_exchange_in_order_that_lists_it(
    container: Fetcher, exchanges: tuple[BinanceSimulator, CoinbaseSimulator, KrakenSimulator]
) -> None:
    _, _, kraken = exchanges

    tick(container)

    # binance.com lists no USD pairs: those come from Coinbase, under Coinbase's own names
    assert sources(prices(",".join(DEFAULT_PAIRS))) == {
        "BTC/USD": ("coinbase", "BTC-USD"),
        "BTC/USDT": ("binance", "BTCUSDT"),
        "ETH/USD": ("coinbase", "ETH-USD"),
        "ETH/USDT": ("binance", "ETHUSDT"),
    }
    fetcher = health()["fetcher"]
    assert fetcher["pairSources"]["BTC/USD"] == {
        "exchange": "coinbase",
        "symbol": "BTC-USD",
        "preferred": True,
    }
    assert fetcher["exchanges"]["binance"]["pairs"] == ["BTC/USDT", "ETH/USDT"]
    assert fetcher["exchanges"]["kraken"]["pairs"] == []
    # Kraken, third in order, was read for its listing only: no ticker request for pairs it does not serve
    assert [r.path for r in kraken.requests] == ["/0/public/AssetPairs"]


def test_a_failing_source_fails_over_from_the_next_tick_and_the_pair_returns_when_it_recovers(
    container: Fetcher,
    make_container: Callable[..., Fetcher],
    exchanges: tuple[BinanceSimulator, CoinbaseSimulator, KrakenSimulator],
    capsys: pytest.CaptureFixture[str],
) -> None:
    binance, _, _ = exchanges
    tick(container)
    binance.set_fault("server_error", path=BINANCE_TICKER, status=503)

    tick(container)  # binance fails: its pairs are not served this tick...
    assert "exchange error: http_5xx" in health()["fetcher"]["missingPairs"]["BTC/USDT"]

    tick(make_container())  # ...and from the next one the next exchange that lists them serves them,
    # whichever invocation owns the slot (overlapping invocations share the holds)
    assert sources(prices("BTC/USDT,ETH/USDT")) == {
        "BTC/USDT": ("coinbase", "BTC-USDT"),
        "ETH/USDT": ("coinbase", "ETH-USDT"),
    }
    body = health()
    assert body["fetcher"]["pairSources"]["BTC/USDT"]["preferred"] is False  # no silent mixing
    assert body["fetcher"]["missingPairs"] == {}
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    slot = next(doc for doc in reversed(documents) if "PairsOnFallback" in doc)
    by_exchange = [doc for doc in documents if doc.get("slot") is None and "PairsFetchedByExchange" in doc]
    assert slot["PairsOnFallback"] == [2.0]  # operators see it on the dashboard too
    assert (by_exchange[-1]["kind"], by_exchange[-1]["PairsFetchedByExchange"]) == ("coinbase", [4.0])
    ticker_calls = len([r for r in binance.requests if r.path == BINANCE_TICKER])

    tick(container)  # while the hold lasts, binance is not asked for them again
    assert len([r for r in binance.requests if r.path == BINANCE_TICKER]) == ticker_calls

    binance.clear_faults()
    end_holds(container)
    tick(container)  # the hold over, binance is asked again (the probe), answers, and keeps its pairs
    assert sources(prices("BTC/USDT,ETH/USDT")) == {
        "BTC/USDT": ("binance", "BTCUSDT"),
        "ETH/USDT": ("binance", "ETHUSDT"),
    }
    assert container.state.holds.holds == {}
    tick(container)
    assert health()["fetcher"]["pairSources"]["ETH/USDT"] == {
        "exchange": "binance",
        "symbol": "ETHUSDT",
        "preferred": True,
    }


def test_a_source_that_still_fails_when_probed_is_held_off_longer(
    container: Fetcher, exchanges: tuple[BinanceSimulator, CoinbaseSimulator, KrakenSimulator]
) -> None:
    binance, _, _ = exchanges
    tick(container)
    binance.set_fault("server_error", path=BINANCE_TICKER, status=503)
    tick(container)
    first = container.state.holds.holds[("binance", "BTC/USDT")]
    first_hold = first.until_ms - now_ms()

    end_holds(container)
    tick(container)  # probed, failed again

    second = container.state.holds.holds[("binance", "BTC/USDT")]
    assert second.failures == 2 and second.until_ms - now_ms() > first_hold * 1.5
    assert sources(prices("BTC/USDT"))["BTC/USDT"][0] == "binance"  # the last good price, until...
    tick(container)
    assert sources(prices("BTC/USDT"))["BTC/USDT"] == ("coinbase", "BTC-USDT")


def test_binance_refusing_this_location_sends_its_pairs_elsewhere_at_once_and_health_says_why(
    container: Fetcher, exchanges: tuple[BinanceSimulator, CoinbaseSimulator, KrakenSimulator]
) -> None:
    binance, _, _ = exchanges
    binance.set_fault("restricted")  # HTTP 451 on everything, as binance.com answers US addresses

    tick(container)

    assert sources(prices(",".join(DEFAULT_PAIRS))) == {
        "BTC/USD": ("coinbase", "BTC-USD"),
        "BTC/USDT": ("coinbase", "BTC-USDT"),
        "ETH/USD": ("coinbase", "ETH-USD"),
        "ETH/USDT": ("coinbase", "ETH-USDT"),
    }
    body = health()
    assert "non-US region" in body["fetcher"]["advice"]
    assert body["fetcher"]["exchanges"]["binance"]["lastError"].startswith("restricted_location")
    assert [r.path for r in binance.requests] == ["/api/v3/exchangeInfo"]  # not a ticker call more


def test_a_pair_is_suspended_only_when_no_configured_exchange_lists_it(
    container: Fetcher, exchanges: tuple[BinanceSimulator, CoinbaseSimulator, KrakenSimulator]
) -> None:
    binance, coinbase, kraken = exchanges
    tick(container)

    binance.remove_symbol("BTCUSDT")  # delisted on binance: coinbase lists it too
    container.state.exchanges["binance"].listing.next_read_at = 0  # the listing's refresh comes
    tick(container)
    assert record(container, "BTC/USDT").status == "active"
    assert sources(prices("BTC/USDT")) == {"BTC/USDT": ("coinbase", "BTC-USDT")}

    coinbase.set_status("BTC-USDT", "delisted")
    kraken.remove_pair("XBTUSDT")
    for memory in container.state.exchanges.values():
        memory.listing.next_read_at = 0
    tick(container)

    btc = record(container, "BTC/USDT")
    assert btc.status == "suspended"
    assert btc.reason == (
        "binance does not list BTC/USDT; coinbase reports BTC-USDT as delisted: not trading; "
        "kraken does not list BTC/USDT"
    )
    assert record(container, "ETH/USDT").status == "active"


def test_submissions_are_verified_on_whichever_exchange_lists_them(
    container: Fetcher, exchanges: tuple[BinanceSimulator, CoinbaseSimulator, KrakenSimulator]
) -> None:
    tick(container)
    submitted(container.deps.table, "SOL/USD", "DOGE/USD", "FOO/USD")

    # Kraken allows about one request a second: its listing, the pair's rolling open and the
    # ticker take a few slots of this test's 2 s.
    for _ in range(6):
        tick(container)
        if all(record(container, pair).status != "pending" for pair in ("SOL/USD", "DOGE/USD", "FOO/USD")):
            break

    sol, doge, foo = (record(container, pair) for pair in ("SOL/USD", "DOGE/USD", "FOO/USD"))
    assert (sol.status, sol.exchange, sol.symbol) == ("active", "coinbase", "SOL-USD")
    # only Kraken trades DOGE/USD, under its own XDG name, found through its listing
    assert (doge.status, doge.exchange, doge.symbol) == ("active", "kraken", "XDGUSD")
    assert foo.status == "rejected"
    assert foo.reason == (
        "binance does not list FOO/USD; coinbase does not list FOO/USD; kraken does not list FOO/USD"
    )
    tick(container)
    assert sources(prices("DOGE/USD,SOL/USD")) == {
        "DOGE/USD": ("kraken", "XDGUSD"),
        "SOL/USD": ("coinbase", "SOL-USD"),
    }


def test_each_exchange_is_asked_within_its_own_limits_once_per_slot(
    container: Fetcher, exchanges: tuple[BinanceSimulator, CoinbaseSimulator, KrakenSimulator]
) -> None:
    binance, coinbase, kraken = exchanges
    store.seed_registry(container.deps.table, [*DEFAULT_PAIRS, "DOGE/USD", "SOL/USD"], now_ms=now_ms())
    ticks = 5

    for _ in range(ticks):
        tick(container)

    for sim in exchanges:
        assert all(r.status != 429 for r in sim.requests), type(sim).__name__
    # binance: one request per batch per slot (the two USDT pairs are one batch), after its listing
    assert len([r for r in binance.requests if r.path == BINANCE_TICKER]) == ticks
    # coinbase: no batching, so a ticker request per product per slot, and its stats once
    tickers = [r.path for r in coinbase.requests if r.path.endswith("/ticker")]
    assert len(tickers) == 3 * ticks and len(set(tickers)) == 3
    assert len([r for r in coinbase.requests if r.path.endswith("/stats")]) == 3
    # kraken: at most one Ticker request per slot, never faster than about one request a second
    kraken_times = [r.monotonic for r in kraken.requests]
    assert len([r for r in kraken.requests if r.path == KRAKEN_TICKER]) <= ticks
    assert all(later - earlier >= 0.95 for earlier, later in itertools.pairwise(kraken_times))
    assert sources(prices("DOGE/USD"))["DOGE/USD"] == ("kraken", "XDGUSD")


def test_pairs_beyond_what_coinbase_can_fetch_in_a_slot_go_to_the_next_exchange_that_lists_them(
    container: Fetcher, exchanges: tuple[BinanceSimulator, CoinbaseSimulator, KrakenSimulator]
) -> None:
    _, coinbase, kraken = exchanges
    # 14 USD pairs both list, against Coinbase's 12 ticker requests in this test's 2 s slot
    extra = [f"C{index:02d}" for index in range(12)]
    for index, base in enumerate(extra):
        coinbase.add_product(f"{base}-USD", base, "USD", 10.0 + index)
        kraken.add_pair(f"{base}USD", base, "ZUSD", price=10.0 + index)
    pairs = ["BTC/USD", "ETH/USD", *(f"{base}/USD" for base in extra)]
    store.seed_registry(container.deps.table, pairs, now_ms=now_ms())

    for _ in range(4):
        tick(container)
    served_by = sources(prices(",".join(pairs)))
    tick(container)

    assert len(served_by) == len(pairs)  # every pair served, none left waiting on Coinbase's rate
    on_coinbase = {pair for pair, (exchange, _) in served_by.items() if exchange == "coinbase"}
    assert len(on_coinbase) == container.deps.exchanges["coinbase"].capacity(2.0) == 12
    assert set(health()["fetcher"]["exchanges"]["coinbase"]["pairs"]) == on_coinbase  # the same ones
    assert all(r.status != 429 for r in coinbase.requests)


def test_a_kraken_pair_whose_rolling_open_cannot_be_read_costs_only_that_pair(
    make_container: Callable[..., Fetcher],
    exchanges: tuple[BinanceSimulator, CoinbaseSimulator, KrakenSimulator],
) -> None:
    _, _, kraken = exchanges
    container = make_container(FETCH_INTERVAL_MS="4000")  # 4 s slots, as deployed: three Kraken requests each
    store.seed_registry(container.deps.table, ["DOGE/USD", "USDT/USD"], now_ms=now_ms())
    kraken.set_fault("server_error", path="/0/public/OHLC", count=1)  # DOGE's open read fails once

    for _ in range(4):
        tick(container)
        if health()["fetcher"]["exchanges"]["kraken"]["pairs"]:
            break

    assert sources(prices("USDT/USD")) == {"USDT/USD": ("kraken", "USDTZUSD")}
    assert (
        health()["fetcher"]["missingPairs"]["DOGE/USD"] == "exchange error: http_5xx (its rolling 24 h open)"
    )
    assert container.state.exchanges["kraken"].circuit.state == "closed"
    ohlc_reads = len([r for r in kraken.requests if r.path == "/0/public/OHLC"])
    tick(container)
    assert len([r for r in kraken.requests if r.path == "/0/public/OHLC"]) == ohlc_reads  # not at once

    source = container.deps.exchanges["kraken"]
    assert isinstance(source, KrakenExchange)
    source.open_failures = {key: (at - OPEN_RETRY_MS, why) for key, (at, why) in source.open_failures.items()}
    for _ in range(3):  # a minute on, it is asked again
        tick(container)
        if len(health()["fetcher"]["exchanges"]["kraken"]["pairs"]) == 2:
            break
    assert sources(prices("DOGE/USD")) == {"DOGE/USD": ("kraken", "XDGUSD")}


def test_invocations_taking_slots_in_turn_keep_to_each_exchange_s_rate_between_them(
    make_container: Callable[..., Fetcher],
    exchanges: tuple[BinanceSimulator, CoinbaseSimulator, KrakenSimulator],
) -> None:
    _, _, kraken = exchanges
    # Two containers of overlapping invocations, each with its own clients and pacers, in 4 s slots
    first, second = make_container(FETCH_INTERVAL_MS="4000"), make_container()
    store.seed_registry(first.deps.table, ["DOGE/USD", "USDT/USD"], now_ms=now_ms())

    for _ in range(2):  # the slots go to one invocation, then the other
        tick(first)
        tick(second)

    starts = [r.monotonic for r in kraken.requests]
    assert len(starts) >= 5
    assert all(later - earlier >= 0.95 for earlier, later in itertools.pairwise(starts))
    assert all(r.status == 200 and not r.errors for r in kraken.requests)


def test_a_new_container_serves_at_once_with_the_slow_figures_another_one_read(
    container: Fetcher,
    make_container: Callable[..., Fetcher],
    exchanges: tuple[BinanceSimulator, CoinbaseSimulator, KrakenSimulator],
) -> None:
    _, coinbase, kraken = exchanges
    store.seed_registry(container.deps.table, ["DOGE/USD", "SOL/USD"], now_ms=now_ms())
    for _ in range(4):
        tick(container)
        if len(health()["fetcher"]["exchanges"]["kraken"]["pairs"]) == 1:
            break
    kraken.reset_requests()
    coinbase.reset_requests()

    # A container started by an overlapping invocation takes the next slot (4 s, as deployed: its
    # own Kraken listing read and the Ticker request must both fit at one request a second).
    tick(make_container(FETCH_INTERVAL_MS="4000"))

    # Kraken's rolling open and Coinbase's 24 h stats came from the cache, not the exchanges
    assert health()["fetcher"]["exchanges"]["kraken"]["pairs"] == ["DOGE/USD"]
    assert "SOL/USD" in health()["fetcher"]["exchanges"]["coinbase"]["pairs"]
    assert [r.path for r in kraken.requests if r.path != "/0/public/AssetPairs"] == [KRAKEN_TICKER]
    assert not [r for r in coinbase.requests if r.path.endswith("/stats")]
