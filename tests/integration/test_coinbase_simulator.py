"""The Coinbase simulator over real HTTP, held to shared/fixtures/coinbase, and the adapter against it."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
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


# --- candles -----------------------------------------------------------------------------------------------
GRANULARITIES = [60, 300, 900, 3600, 21600, 86400]
TOO_MANY_CANDLES = {
    "message": "granularity too small for the requested time range. Count of aggregations requested "
    "exceeds 300"
}


def candles(http: httpx.Client, product_id: str = "BTC-USD", **params: str) -> list[list[Any]]:
    response = http.get(f"/products/{product_id}/candles", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_candles_have_exactly_the_fixture_shape(http: httpx.Client) -> None:
    documented = fixture("candles_example.json")
    assert documented[0][0] > documented[1][0]  # newest first, as the fixture shows
    for product_id in ONLINE:
        rows = candles(http, product_id)
        assert len(rows) == 300  # without start and end: the newest 300
        for row in rows:  # [time, low, high, open, close, volume]: an int, then numbers
            assert [type(value) for value in row] == [type(value) for value in documented[0]], row


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_candles_are_aligned_newest_first_and_begin_with_the_bucket_in_progress(
    http: httpx.Client, granularity: int
) -> None:
    before = time.time()
    rows = candles(http, granularity=str(granularity))
    after = time.time()
    times = [row[0] for row in rows]
    assert len(rows) == 300 and times[0] % granularity == 0
    assert times == list(range(times[0], times[0] - 300 * granularity, -granularity))
    assert times[0] <= after and times[0] + granularity > before  # in progress: nothing after now
    for _time, low, high, open_, close, volume in rows:
        assert 0 < low <= min(open_, close) <= max(open_, close) <= high
        assert volume > 0


def test_the_newest_candle_closes_at_the_ticker_price_and_all_stay_near_it(
    sim: CoinbaseSimulator, http: httpx.Client
) -> None:
    sim.set_status("BTC-USD", "online", trading_disabled=True)  # no trade between the reads
    price = float(http.get("/products/BTC-USD/ticker").json()["price"])
    for granularity in GRANULARITIES:
        assert candles(http, granularity=str(granularity))[0][4] == price
    for product_id in ("ETH-USD", "SOL-USD", "ADA-BTC"):
        price = float(http.get(f"/products/{product_id}/ticker").json()["price"])
        for granularity in ("60", "3600", "86400"):
            rows = candles(http, product_id, granularity=granularity)
            assert all(price * 0.85 < row[4] < price * 1.15 for row in rows)


def test_candles_honour_start_and_end(http: httpx.Client) -> None:
    step = 60
    current = int(time.time()) // step * step
    start = current - 400 * step

    def times(**params: str) -> list[int]:
        return [row[0] for row in candles(http, granularity=str(step), **params)]

    # 300 buckets exactly: the most one request may span.
    assert times(start=iso(start), end=iso(start + 300 * step)) == list(
        range(start + 299 * step, start - 1, -step)
    )
    # The bucket holding an unaligned start comes first: it may begin before start.
    assert times(start=iso(start + 30), end=iso(start + 5 * step - 1)) == list(
        range(start + 4 * step, start - 1, -step)
    )
    # ISO 8601 with a zone and a fraction; epoch seconds too.
    assert times(start="1970-01-01T01:00:00.5+01:00", end="1970-01-01T00:02:30Z") == [120, 60, 0]
    assert times(start=str(start), end=str(start + 2 * step)) == [start + step, start]
    # Nothing after the bucket in progress.
    newest = times(start=iso(current - 10 * step), end=iso(current + 100 * step))
    assert newest[0] <= time.time() and len(newest) in (11, 12)
    # One of start and end alone is ignored, as documented: the newest 300.
    for alone in ({"start": iso(start)}, {"end": iso(start)}):
        assert len(latest := times(**alone)) == 300 and latest[0] >= current


@pytest.mark.parametrize(("granularity", "span"), [(60, 301), (3600, 301), (86400, 1000)])
def test_a_range_of_more_than_300_buckets_is_refused(http: httpx.Client, granularity: int, span: int) -> None:
    start = (int(time.time()) // granularity - 400) * granularity
    params = {"granularity": str(granularity), "start": iso(start), "end": iso(start + span * granularity)}
    response = http.get("/products/BTC-USD/candles", params=params)
    assert (response.status_code, response.json()) == (400, TOO_MANY_CANDLES)


@pytest.mark.parametrize("granularity", ["61", "120", "7200", "abc", "-60", ""])
def test_an_unsupported_granularity_is_refused(http: httpx.Client, granularity: str) -> None:
    response = http.get("/products/BTC-USD/candles", params={"granularity": granularity})
    assert (response.status_code, response.json()) == (400, {"message": "Unsupported granularity"})


def test_candles_of_an_unknown_product_answer_the_fixture_404(http: httpx.Client) -> None:
    response = http.get("/products/NOPE-USD/candles", params={"granularity": "60"})
    assert (response.status_code, response.json()) == (404, fixture("error_not_found.json"))


def test_an_hour_is_exactly_its_minutes_on_every_request(http: httpx.Client) -> None:
    hour_start, low, high, open_, close, volume = candles(http, granularity="3600")[2]  # closed
    span = {"start": iso(hour_start), "end": iso(hour_start + 3600)}
    minutes = candles(http, granularity="60", **span)
    assert [row[0] for row in minutes] == list(range(hour_start + 3540, hour_start - 1, -60))
    assert (open_, close) == (minutes[-1][3], minutes[0][4])
    assert (low, high) == (min(row[1] for row in minutes), max(row[2] for row in minutes))
    assert volume == pytest.approx(sum(row[5] for row in minutes), rel=1e-6)
    time.sleep(0.3)
    assert candles(http, granularity="60", **span) == minutes  # closed buckets do not change


def test_closed_candles_come_from_the_seed(http: httpx.Client) -> None:
    hour = int(time.time()) // 3600 * 3600
    span = {"granularity": "300", "start": iso(hour - 7200), "end": iso(hour)}
    ours = candles(http, "ETH-USD", **span)
    for seed, same in ((7, True), (8, False)):
        with CoinbaseSimulator(seed=seed, rate_limit_per_s=None) as other:
            url = f"{other.base_url}/products/ETH-USD/candles"
            theirs = httpx.get(url, params=span, verify=SSL_CONTEXT).json()
        assert (theirs == ours) == same


def test_candles_count_against_the_public_rate_limit() -> None:
    with (
        CoinbaseSimulator(seed=1, rate_limit_per_s=3) as simulator,
        httpx.Client(verify=SSL_CONTEXT, base_url=simulator.base_url, timeout=5) as http,
    ):
        for _attempt in range(3):  # four requests within one window; a loaded machine may need another go
            time.sleep(1.05)
            started = time.monotonic()
            statuses = [http.get("/products/BTC-USD/candles").status_code for _ in range(4)]
            if time.monotonic() - started < 0.9:
                break
        assert statuses == [200, 200, 200, 429]
