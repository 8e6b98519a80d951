"""Coinbase and Kraken sources over real HTTP: each within its own limits, slow figures kept between slots."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from fetcher.exchanges.coinbase import IN_FLIGHT as COINBASE_IN_FLIGHT
from fetcher.exchanges.coinbase import CoinbaseClient, CoinbaseExchange
from fetcher.exchanges.kraken import HOUR_MS, KrakenClient, KrakenExchange
from local_stack.coinbase_simulator import CoinbaseSimulator
from local_stack.kraken_simulator import KrakenSimulator

SLOT_S = 4.0


class Clock:
    """Epoch ms that a test can move forward (the refresh intervals), real time otherwise."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(2.0, connect=1.0)) as client:
        yield client


def most_in_any_second(times: list[float]) -> int:
    return max((sum(1 for t in times if start <= t < start + 1.0) for start in times), default=0)


# --- Coinbase ------------------------------------------------------------------------------------


@pytest.fixture
def coinbase_sim() -> Iterator[CoinbaseSimulator]:
    with CoinbaseSimulator(seed=5) as sim:  # its documented 10 requests a second
        yield sim


def coinbase_routes(source: CoinbaseExchange, pairs: list[str]) -> dict[str, str]:
    listing = source.listing()
    return {pair: listing[pair].symbol for pair in pairs}


def test_coinbase_reads_stats_once_per_refresh_and_a_ticker_per_product_every_slot(
    coinbase_sim: CoinbaseSimulator, http: httpx.Client
) -> None:
    clock = Clock()
    source = CoinbaseExchange(CoinbaseClient(http, coinbase_sim.base_url), clock_ms=clock)
    routes = coinbase_routes(source, ["BTC/USD", "ETH/USD", "BTC/USDT"])
    coinbase_sim.reset_requests()

    first = source.fetch(routes, deadline=time.monotonic() + SLOT_S)
    second = source.fetch(routes, deadline=time.monotonic() + SLOT_S)
    clock.offset_ms += source.stats_refresh_ms
    third = source.fetch(routes, deadline=time.monotonic() + SLOT_S)

    for result in (first, second, third):
        assert set(result.tickers) == set(routes) and result.missing == {} and result.errors == []
    btc = first.tickers["BTC/USD"]
    assert (btc.exchange, btc.symbol) == ("coinbase", "BTC-USD")
    paths = [record.path for record in coinbase_sim.requests]
    stats_reads = [path for path in paths if path.endswith("/stats")]
    assert len(stats_reads) == 6  # three products, read in the first slot and after the refresh
    assert sum(path.endswith("/ticker") for path in paths) == 9  # one per product per slot
    assert (first.requests, second.requests, third.requests) == (6, 3, 6)


def test_coinbase_stays_under_its_rate_limit(coinbase_sim: CoinbaseSimulator, http: httpx.Client) -> None:
    for n in range(4):
        coinbase_sim.add_product(f"T{n}-USD", f"T{n}", "USD", 10.0 + n)
    source = CoinbaseExchange(CoinbaseClient(http, coinbase_sim.base_url))
    routes = coinbase_routes(
        source, ["BTC/USD", "ETH/USD", "SOL/USD", "T0/USD", "T1/USD", "T2/USD", "T3/USD"]
    )
    coinbase_sim.reset_requests()

    result = source.fetch(routes, deadline=time.monotonic() + SLOT_S)

    assert set(result.tickers) == set(routes)
    records = coinbase_sim.requests
    assert len(records) == 14 and {record.status for record in records} == {200}  # never a 429
    assert most_in_any_second([record.monotonic for record in records]) <= 10


def test_coinbase_fetches_what_the_slot_allows_and_the_rest_next_slot(
    coinbase_sim: CoinbaseSimulator, http: httpx.Client
) -> None:
    source = CoinbaseExchange(CoinbaseClient(http, coinbase_sim.base_url))
    routes = coinbase_routes(source, ["BTC/USD", "ETH/USD", "SOL/USD", "BTC/USDT", "ETH/USDT"])

    short = source.fetch(routes, deadline=time.monotonic() + 0.5)  # four requests' worth at 8 a second
    assert short.missing and all("request rate is spent" in why for why in short.missing.values())
    assert set(short.tickers) | set(short.missing) == set(routes)

    full = source.fetch(routes, deadline=time.monotonic() + SLOT_S)
    assert set(full.tickers) == set(routes)


def test_a_coinbase_429_stops_the_slot_and_names_the_pairs(
    coinbase_sim: CoinbaseSimulator, http: httpx.Client
) -> None:
    for n in range(5):
        coinbase_sim.add_product(f"T{n}-USD", f"T{n}", "USD", 10.0 + n)
    source = CoinbaseExchange(CoinbaseClient(http, coinbase_sim.base_url))
    routes = coinbase_routes(source, ["BTC/USD", "ETH/USD", "SOL/USD", *(f"T{n}/USD" for n in range(5))])
    coinbase_sim.set_fault("rate_limit", count=1)
    coinbase_sim.reset_requests()

    result = source.fetch(routes, deadline=time.monotonic() + SLOT_S)

    assert result.rate_limited is not None and result.rate_limited.kind == "rate_limited"
    assert any(why == "exchange error: rate_limited" for why in result.missing.values())
    assert any("answered 429" in why for why in result.missing.values())
    # Only requests already on their way finish; no new one starts after the 429.
    records = coinbase_sim.requests
    refused_at = next(record.monotonic for record in records if record.status == 429)
    assert sum(record.monotonic > refused_at for record in records) < COINBASE_IN_FLIGHT


def test_a_failed_stats_refresh_serves_the_kept_figures(
    coinbase_sim: CoinbaseSimulator, http: httpx.Client
) -> None:
    clock = Clock()
    source = CoinbaseExchange(CoinbaseClient(http, coinbase_sim.base_url), clock_ms=clock)
    routes = coinbase_routes(source, ["BTC/USD"])
    assert set(source.fetch(routes, deadline=time.monotonic() + SLOT_S).tickers) == {"BTC/USD"}
    clock.offset_ms += source.stats_refresh_ms
    coinbase_sim.set_fault("server_error", path="/products/BTC-USD/stats", count=1)

    result = source.fetch(routes, deadline=time.monotonic() + SLOT_S)

    assert set(result.tickers) == {"BTC/USD"}  # priced with the stats kept from the last refresh
    assert [error.kind for error in result.errors] == ["http_5xx"]  # and the failure is counted


# --- Kraken --------------------------------------------------------------------------------------


@pytest.fixture
def kraken_sim() -> Iterator[KrakenSimulator]:
    # Four a second instead of one keeps the tests short; the source is paced to match.
    with KrakenSimulator(seed=5, rate_limit_per_s=4.0, burst=1) as sim:
        yield sim


def kraken_source(sim: KrakenSimulator, http: httpx.Client, clock: Clock) -> KrakenExchange:
    return KrakenExchange(KrakenClient(http, sim.base_url), requests_per_s=3.2, clock_ms=clock)


def routes_of(source: KrakenExchange, pairs: list[str]) -> dict[str, str]:
    """``pairs`` routed to ``source`` under the names its listing gives them."""
    listing = source.listing()
    return {pair: listing[pair].symbol for pair in pairs}


def test_kraken_reads_each_rolling_open_once_an_hour_and_every_price_in_one_request(
    kraken_sim: KrakenSimulator, http: httpx.Client
) -> None:
    clock = Clock()
    source = kraken_source(kraken_sim, http, clock)
    routes = routes_of(source, ["BTC/USD", "ETH/USD", "DOGE/USD"])
    kraken_sim.reset_requests()

    first = source.fetch(routes, deadline=time.monotonic() + SLOT_S)
    opened = source.opens["XXBTZUSD"].value
    second = source.fetch(routes, deadline=time.monotonic() + SLOT_S)
    clock.offset_ms += HOUR_MS
    third = source.fetch(routes, deadline=time.monotonic() + SLOT_S)

    for result in (first, second, third):
        assert set(result.tickers) == set(routes) and result.errors == []
    assert (first.requests, second.requests, third.requests) == (4, 1, 4)
    btc = first.tickers["BTC/USD"]
    assert (btc.exchange, btc.symbol) == ("kraken", "XXBTZUSD")
    # change24h from the rolling 24 h open (the candle 24 h back), not Kraken's midnight `o`
    assert btc.change24h == pytest.approx((btc.price - opened) / opened * 100, abs=1e-3)
    records = kraken_sim.requests
    assert all(record.errors == [] for record in records)  # never rate limited
    assert [record.path.rsplit("/", 1)[1] for record in records[:4]] == ["OHLC", "OHLC", "OHLC", "Ticker"]


def test_a_kraken_rate_limit_in_the_body_is_a_rate_limit_and_names_every_pair(
    kraken_sim: KrakenSimulator, http: httpx.Client
) -> None:
    source = kraken_source(kraken_sim, http, Clock())
    routes = routes_of(source, ["BTC/USD", "ETH/USD"])
    kraken_sim.set_fault("rate_limit", count=1)

    result = source.fetch(routes, deadline=time.monotonic() + SLOT_S)

    assert result.rate_limited is not None
    assert result.missing == dict.fromkeys(routes, "exchange error: rate_limited")


def test_a_failed_hourly_open_refresh_keeps_the_prices_in_hand(
    kraken_sim: KrakenSimulator, http: httpx.Client
) -> None:
    clock = Clock()
    source = kraken_source(kraken_sim, http, clock)
    routes = routes_of(source, ["BTC/USD", "ETH/USD"])
    assert set(source.fetch(routes, deadline=time.monotonic() + SLOT_S).tickers) == set(routes)
    clock.offset_ms += HOUR_MS
    kraken_sim.set_fault("service_unavailable", path="/0/public/OHLC")

    result = source.fetch(routes, deadline=time.monotonic() + SLOT_S)

    assert set(result.tickers) == set(routes)  # priced against last hour's opens
    assert result.errors and result.errors[0].kind == "unavailable"
