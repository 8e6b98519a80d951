"""The Coinbase simulator over real HTTP, held to shared/fixtures/coinbase, and the adapter against it."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
import pytest

from fetcher.exchanges.base import ExchangeError, RateLimitedError
from fetcher.exchanges.coinbase import CoinbaseClient, parse_ticker
from local_stack.coinbase_simulator import CoinbaseSimulator
from local_stack.simulator_http import command_line_process
from tests.support import FIXTURES, simulator_fixtures

COINBASE = FIXTURES / "coinbase"
ONLINE = ["BTC-USD", "ETH-USD", "SOL-USD", "BTC-USDT", "ETH-USDT"]
ISO_TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
# The documented /products entry fields the adapter and the fetcher rely on, with their JSON types.
PRODUCT_FIELDS: dict[str, type] = {
    "id": str,
    "base_currency": str,
    "quote_currency": str,
    "status": str,
    "trading_disabled": bool,
    "cancel_only": bool,
    "post_only": bool,
    "limit_only": bool,
    "base_increment": str,
    "quote_increment": str,
    "display_name": str,
}
# Loading CA certificates costs ~0.15 s per httpx client; the simulator is plain HTTP, so share one context.
SSL_CONTEXT = httpx.create_ssl_context()


def fixture(name: str) -> Any:
    return json.loads((COINBASE / name).read_text())


def types(obj: dict[str, Any]) -> dict[str, type]:
    return {key: type(value) for key, value in obj.items()}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# The simulator unlimited, so shape tests may call freely (the rate-limit tests start their own), and a
# plain-HTTP client on it.
sim, http = simulator_fixtures(partial(CoinbaseSimulator, seed=7, rate_limit_per_s=None), SSL_CONTEXT)


@contextmanager
def adapter_for(base_url: str) -> Iterator[CoinbaseClient]:
    """The adapter as the fetcher holds it: one shared client with short, explicit timeouts."""
    with httpx.Client(verify=SSL_CONTEXT, timeout=httpx.Timeout(0.5)) as client:
        yield CoinbaseClient(client, base_url)


@pytest.fixture
def adapter(sim: CoinbaseSimulator) -> Iterator[CoinbaseClient]:
    with adapter_for(sim.base_url) as client:
        yield client


# --- payload shapes --------------------------------------------------------------------------------------
def test_ticker_has_exactly_the_fixture_keys_and_types(http: httpx.Client) -> None:
    expected = fixture("ticker_BTC-USDT.json")
    for product_id in ONLINE:
        response = http.get(f"/products/{product_id}/ticker")
        assert response.status_code == 200
        body = response.json()
        assert list(body) == list(expected)
        assert types(body) == types(expected)
        assert ISO_TIME_RE.fullmatch(body["time"])


def test_stats_have_exactly_the_fixture_keys_and_types(http: httpx.Client) -> None:
    expected = fixture("stats_example.json")
    for product_id in ONLINE:
        body = http.get(f"/products/{product_id}/stats").json()
        assert list(body) == list(expected)
        assert types(body) == types(expected)


def test_products_list_the_documented_fields_and_statuses(http: httpx.Client) -> None:
    listing = http.get("/products").json()
    assert isinstance(listing, list)
    for entry in listing:
        assert {key: type(entry[key]) for key in PRODUCT_FIELDS} == PRODUCT_FIELDS
        assert entry["status"] in {"online", "offline", "delisted"}
        assert entry["id"] == f"{entry['base_currency']}-{entry['quote_currency']}"
    by_id = {entry["id"]: entry for entry in listing}
    assert all(by_id[product_id]["status"] == "online" for product_id in ONLINE)
    assert by_id["ADA-BTC"]["trading_disabled"] is True
    assert by_id["DOGE-BTC"]["status"] == "offline"
    assert http.get("/products/BTC-USD").json() == by_id["BTC-USD"]


def test_unknown_products_and_paths_answer_the_fixture_404(http: httpx.Client) -> None:
    for path in ("/products/NOPE-USD/ticker", "/products/NOPE-USD/stats", "/products/NOPE-USD", "/nowhere"):
        response = http.get(path)
        assert (response.status_code, response.json()) == (404, fixture("error_not_found.json")), path


def test_numbers_are_decimals_and_stats_agree_with_the_ticker(http: httpx.Client) -> None:
    for product_id in ONLINE:
        ticker = http.get(f"/products/{product_id}/ticker").json()
        stats = http.get(f"/products/{product_id}/stats").json()
        t = {key: Decimal(value) for key, value in ticker.items() if key != "time"}
        s = {key: Decimal(value) for key, value in stats.items()}
        assert all(number.is_finite() for number in (*t.values(), *s.values()))
        assert s["open"] > 0
        assert s["low"] <= s["last"] <= s["high"]
        assert t["bid"] < t["price"] < t["ask"]
        assert t["price"] == s["last"]  # no step between the two calls within 250 ms of each other
        assert t["volume"] == s["volume"] > 0
        assert s["volume_30day"] > s["volume"]
        assert abs(datetime.fromisoformat(ticker["time"]).timestamp() - time.time()) < 5


def test_prices_walk_but_not_for_markets_that_do_not_trade(http: httpx.Client) -> None:
    products = [*ONLINE, "ADA-BTC", "DOGE-BTC"]
    first = {p: http.get(f"/products/{p}/ticker").json() for p in products}
    time.sleep(0.6)
    second = {p: http.get(f"/products/{p}/ticker").json() for p in products}
    assert any(first[p]["price"] != second[p]["price"] for p in ONLINE)
    assert all(int(second[p]["trade_id"]) > int(first[p]["trade_id"]) for p in ONLINE)
    for p in ("ADA-BTC", "DOGE-BTC"):  # trading disabled, offline
        assert (first[p]["price"], first[p]["trade_id"]) == (second[p]["price"], second[p]["trade_id"])
    for p in ONLINE:
        stats = http.get(f"/products/{p}/stats").json()
        assert Decimal(stats["low"]) <= Decimal(stats["last"]) <= Decimal(stats["high"])


def test_seed_fixes_the_starting_market() -> None:
    def opens(seed: int) -> list[str]:
        with CoinbaseSimulator(seed=seed, rate_limit_per_s=None) as simulator:
            return [
                httpx.get(f"{simulator.base_url}/products/{p}/stats", verify=SSL_CONTEXT).json()["open"]
                for p in ONLINE
            ]

    assert opens(3) == opens(3)
    assert opens(3) != opens(4)


# --- the adapter over HTTP -------------------------------------------------------------------------------
def test_adapter_lists_products_and_parses_live_tickers(adapter: CoinbaseClient) -> None:
    by_pair = adapter.products()
    assert by_pair["BTC/USD"].symbol == "BTC-USD"
    assert by_pair["ETH/USDT"].symbol == "ETH-USDT"
    assert by_pair["ADA/BTC"].status == "trading_disabled"
    assert by_pair["DOGE/BTC"].status == "offline"
    for pair in ("BTC/USD", "ETH/USD", "SOL/USD", "BTC/USDT", "ETH/USDT"):
        product_id = by_pair[pair].symbol
        fetched_at = now_ms()
        ticker = parse_ticker(
            adapter.ticker(product_id),
            adapter.stats(product_id),
            pair,
            product_id=product_id,
            fetched_at=fetched_at,
        )
        assert (ticker.pair, ticker.exchange, ticker.symbol) == (pair, "coinbase", product_id)
        assert ticker.low24h <= ticker.price <= ticker.high24h
        assert fetched_at - 5_000 < ticker.timestamp <= fetched_at


def test_adapter_follows_listing_changes(
    sim: CoinbaseSimulator, adapter: CoinbaseClient, http: httpx.Client
) -> None:
    sim.add_product("XRP-USD", "XRP", "USD", 0.52)
    control = {
        "action": "set_status",
        "product_id": "BTC-USD",
        "status": "delisted",
        "trading_disabled": True,
    }
    listing = http.post("/_simulator/products", json=control).json()["products"]
    assert {p["id"]: p["status"] for p in listing}["BTC-USD"] == "delisted"
    by_pair = adapter.products()
    assert by_pair["XRP/USD"].status == "online"
    assert by_pair["BTC/USD"].status == "delisted"

    sim.remove_product("XRP-USD")
    assert "XRP/USD" not in adapter.products()
    with pytest.raises(ExchangeError) as raised:
        adapter.ticker("XRP-USD")
    assert (raised.value.kind, raised.value.status) == ("not_found", 404)


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ({"fault": "server_error", "status": 503}, "http_5xx"),
        ({"fault": "server_error", "status": 500}, "http_5xx"),
        ({"fault": "server_error", "status": 502}, "http_5xx"),  # the CDN's HTML page
        ({"fault": "invalid_json"}, "bad_body"),
        ({"fault": "rate_limit"}, "rate_limited"),
    ],
)
def test_adapter_counts_faults_by_kind(
    sim: CoinbaseSimulator, adapter: CoinbaseClient, http: httpx.Client, fault: dict[str, Any], kind: str
) -> None:
    # Given a fault for the next request, set over the control route as the end-to-end tests do
    assert http.post("/_simulator/faults", json={**fault, "count": 1}).status_code == 200
    # When the adapter asks for a ticker, Then the failure has the right kind
    with pytest.raises(ExchangeError) as raised:
        adapter.ticker("BTC-USD")
    assert raised.value.kind == kind
    # And the fault was used up
    assert adapter.ticker("BTC-USD")["price"]


def test_adapter_reports_a_timeout_and_the_simulator_recovers(
    sim: CoinbaseSimulator, adapter: CoinbaseClient
) -> None:
    sim.set_fault("timeout", seconds=3, count=1, path="/products/BTC-USD/stats")
    assert adapter.ticker("BTC-USD")  # another path: unaffected
    started = time.perf_counter()
    with pytest.raises(ExchangeError) as raised:
        adapter.stats("BTC-USD")
    assert raised.value.kind == "timeout"
    assert time.perf_counter() - started < 2
    assert adapter.stats("BTC-USD")["open"]


def test_latency_fault_delays_without_failing(sim: CoinbaseSimulator, adapter: CoinbaseClient) -> None:
    sim.set_fault("latency", latency_ms=200, count=1)
    started = time.perf_counter()
    adapter.ticker("ETH-USD")
    assert time.perf_counter() - started >= 0.2


def test_adapter_reports_a_closed_port_as_a_network_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    with adapter_for(f"http://127.0.0.1:{port}") as adapter, pytest.raises(ExchangeError) as raised:
        adapter.products()
    assert raised.value.kind == "network"


# --- the public rate limit ---------------------------------------------------------------------------------
def test_more_than_ten_requests_in_a_second_are_refused_with_429() -> None:
    with (
        CoinbaseSimulator(seed=1) as simulator,
        httpx.Client(verify=SSL_CONTEXT, base_url=simulator.base_url, timeout=5) as http,
    ):
        for _attempt in range(3):  # twelve requests within one window; a loaded machine may need another go
            time.sleep(1.05)  # the earlier attempt's requests leave the window
            simulator.reset_requests()
            started = time.monotonic()
            statuses = [http.get("/products/BTC-USD/ticker").status_code for _ in range(12)]
            if time.monotonic() - started < 0.9:
                break
        assert statuses == [200] * 10 + [429] * 2
        refused = http.get("/products/BTC-USD/stats")
        assert refused.json() == {"message": "Public rate limit exceeded"}
        assert [record.status for record in simulator.requests] == [*statuses, 429]

        time.sleep(max(0.0, started + 1.05 - time.monotonic()))  # the counted requests leave the window
        assert http.get("/products/BTC-USD/ticker").status_code == 200


def test_adapter_raises_rate_limited_with_a_one_second_retry() -> None:
    with (
        CoinbaseSimulator(seed=1, rate_limit_per_s=3) as simulator,
        adapter_for(simulator.base_url) as adapter,
    ):
        for _ in range(3):
            adapter.ticker("SOL-USD")
        with pytest.raises(RateLimitedError) as raised:
            adapter.ticker("SOL-USD")
        assert (raised.value.kind, raised.value.status, raised.value.retry_after_s) == (
            "rate_limited",
            429,
            1,
        )


# --- request log and control -----------------------------------------------------------------------------
def test_request_log_records_api_calls_but_not_control_calls(
    sim: CoinbaseSimulator, http: httpx.Client
) -> None:
    http.get("/products")
    http.get("/products/NOPE-USD/ticker")
    http.get("/_simulator/faults")
    assert [(r.method, r.path, r.status) for r in sim.requests] == [
        ("GET", "/products", 200),
        ("GET", "/products/NOPE-USD/ticker", 404),
    ]
    assert [r["path"] for r in http.get("/_simulator/requests").json()] == [
        "/products",
        "/products/NOPE-USD/ticker",
    ]
    sim.reset_requests()
    assert sim.requests == []


def test_control_rejects_unknown_faults_and_clears_them(sim: CoinbaseSimulator, http: httpx.Client) -> None:
    assert http.post("/_simulator/faults", json={"fault": "meteor"}).status_code == 400
    http.post("/_simulator/faults", json={"fault": "server_error"})
    assert http.get("/products").status_code == 503
    assert len(http.get("/_simulator/faults").json()["faults"]) == 1
    http.delete("/_simulator/faults")
    assert http.get("/products").status_code == 200


def test_main_serves_until_interrupted() -> None:
    with command_line_process("local_stack.coinbase_simulator", "--seed", "2") as (base_url, interrupt):
        assert httpx.get(base_url + "/products/BTC-USD/ticker", verify=SSL_CONTEXT).status_code == 200
        assert interrupt() == 0


def test_products_have_exactly_the_documented_fixture_keys_and_types(http: httpx.Client) -> None:
    # Held to the captured /products entries, not to a list of fields this project wrote itself.
    expected = fixture("products_excerpt.json")
    for entry in http.get("/products").json():
        assert any(list(entry) == list(example) for example in expected), entry["id"]
        assert types(entry) in [types(example) for example in expected], entry["id"]


def test_the_adapter_reads_the_documented_products() -> None:
    from tests.support import answering_http

    client, _ = answering_http(200, (COINBASE / "products_excerpt.json").read_bytes())
    listing = CoinbaseClient(client, "https://api.exchange.coinbase.test").products()
    for entry in fixture("products_excerpt.json"):
        pair = f"{entry['base_currency']}/{entry['quote_currency']}"
        assert listing[pair].symbol == entry["id"]
        assert listing[pair].trading == (entry["status"] == "online" and entry["trading_disabled"] is False)
