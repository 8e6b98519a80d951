"""The Kraken simulator over real HTTP, held to shared/fixtures/kraken, and the adapter driven against it."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
import pytest

from fetcher.exchanges.base import ExchangeError, RateLimitedError
from fetcher.exchanges.kraken import KrakenClient, parse_ticker
from local_stack.kraken_simulator import KrakenSimulator
from local_stack.simulator_http import command_line_process
from tests.support import FIXTURES, simulator_fixtures

KRAKEN = FIXTURES / "kraken"
TICKER = "/0/public/Ticker"
ASSET_PAIRS = "/0/public/AssetPairs"
OHLC = "/0/public/OHLC"
HOUR_S = 3600
# Written out here rather than imported, so the simulator cannot drift from what Kraken sends.
TOO_MANY_REQUESTS = {"error": ["EGeneral:Too many requests"], "result": {}}
# Loading CA certificates costs ~0.15 s per httpx client; the simulator is plain HTTP, so share one context.
SSL_CONTEXT = httpx.create_ssl_context()


def fixture(name: str) -> Any:
    return json.loads((KRAKEN / name).read_text())


def shape(value: Any) -> Any:
    """The JSON types of a value, recursively: what two payloads must share to be the same protocol."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


# The simulator on a free loopback port with the rate limit off, so tests run at full speed, and a
# plain-HTTP client on it.
sim, client = simulator_fixtures(partial(KrakenSimulator, seed=7, rate_limit_per_s=None), SSL_CONTEXT)


@pytest.fixture
def kraken(sim: KrakenSimulator) -> Iterator[KrakenClient]:
    """The adapter as the fetcher builds it: a shared client with short, explicit timeouts."""
    timeout = httpx.Timeout(connect=0.5, read=0.3, write=0.5, pool=0.5)
    with httpx.Client(verify=SSL_CONTEXT, timeout=timeout) as http:
        yield KrakenClient(http, sim.base_url)


# --- payload shapes ----------------------------------------------------------------------------------
def test_ticker_has_exactly_the_fixture_keys_and_value_types(client: httpx.Client) -> None:
    expected = fixture("ticker_XBTUSD.json")
    body = client.get(TICKER, params={"pair": "XBTUSD"}).json()
    assert list(body) == list(expected) and body["error"] == []
    assert list(body["result"]) == ["XXBTZUSD"]  # asked by altname, answered under the canonical key
    assert shape(body) == shape(expected)  # same keys in the same order, same element types
    entry = body["result"]["XXBTZUSD"]
    assert list(entry) == list(expected["result"]["XXBTZUSD"])
    prices = [entry["a"][0], entry["b"][0], entry["c"][0], *entry["p"], *entry["l"], *entry["h"], entry["o"]]
    assert all(re.fullmatch(r"\d+\.\d{5}", price) for price in prices), (
        prices
    )  # five decimals, as the fixture's
    assert all(re.fullmatch(r"\d+\.\d{8}", volume) for volume in [entry["c"][1], *entry["v"]])


def test_a_batch_answers_every_pair_under_its_canonical_key(client: httpx.Client) -> None:
    body = client.get(TICKER, params={"pair": "XBTUSD,XETHZUSD,XDGUSD,ETHUSDT"}).json()
    assert list(body["result"]) == ["XXBTZUSD", "XETHZUSD", "XDGUSD", "ETHUSDT"]


def test_one_unknown_name_fails_the_whole_request_in_the_body(client: httpx.Client) -> None:
    for path in (TICKER, ASSET_PAIRS):
        response = client.get(path, params={"pair": "XBTUSD,NOPEUSD"})
        assert (response.status_code, response.json()) == (200, fixture("error_unknown_pair.json"))


def test_ticker_figures_agree_with_the_hourly_candles(sim: KrakenSimulator, client: httpx.Client) -> None:
    # Given a market that does not trade (so nothing moves between the two reads)
    sim.set_status("XBTUSD", "maintenance")
    # When its candles and its ticker are read within one minute (the hour in progress grows by the minute)
    for _attempt in range(3):
        before = int(time.time())
        body = client.get(OHLC, params={"pair": "XBTUSD", "interval": "60"}).json()
        entry = client.get(TICKER, params={"pair": "XXBTZUSD"}).json()["result"]["XXBTZUSD"]
        candles, after = body["result"]["XXBTZUSD"], int(time.time())
        if before // 60 == after // 60:
            break
    # Then there are 720 hourly candles ending with the hour in progress, each consistent
    assert len(candles) == 720 and list(body["result"]) == ["XXBTZUSD", "last"]
    starts = [row[0] for row in candles]
    assert starts == list(range(starts[0], starts[0] + 720 * HOUR_S, HOUR_S))
    assert starts[-1] in {before // HOUR_S * HOUR_S, after // HOUR_S * HOUR_S}  # an hour may turn
    assert body["result"]["last"] == starts[-2]
    for _start, open_, high, low, close, vwap, volume, count in candles:
        o, h, lo, c, vw = map(Decimal, (open_, high, low, close, vwap))
        assert lo <= min(o, c) <= max(o, c) <= h and lo <= vw <= h
        assert Decimal(volume) >= 0 and isinstance(count, int)
    for earlier, later in itertools.pairwise(candles):
        assert later[1] == earlier[4]  # each hour opens at the previous close
    # And the ticker's last 24 hours are the candles since the hour 24 h before this one
    window = [row for row in candles if row[0] >= starts[-1] - 24 * HOUR_S]
    assert entry["c"][0] == candles[-1][4]
    assert Decimal(entry["h"][1]) == max(Decimal(row[2]) for row in window)
    assert Decimal(entry["l"][1]) == min(Decimal(row[3]) for row in window)
    assert Decimal(entry["l"][1]) <= Decimal(entry["c"][0]) <= Decimal(entry["h"][1])
    assert entry["t"][1] == sum(row[7] for row in window) >= entry["t"][0]
    assert Decimal(entry["v"][1]) >= Decimal(entry["v"][0])


def test_prices_walk_and_stay_within_the_24_hour_range(client: httpx.Client) -> None:
    first = client.get(TICKER).json()["result"]
    time.sleep(0.3)
    second = client.get(TICKER).json()["result"]
    assert first["XETHXXBT"]["c"] == second["XETHXXBT"]["c"]  # cancel_only: no trades
    assert any(first[key]["c"][0] != second[key]["c"][0] for key in second)
    for entry in second.values():
        assert Decimal(entry["l"][1]) <= Decimal(entry["c"][0]) <= Decimal(entry["h"][1])


def test_ohlc_argument_errors(client: httpx.Client) -> None:
    def errors(**params: str) -> list[str]:
        response = client.get(OHLC, params=params)
        assert response.status_code == 200  # Kraken reports errors in the body
        return response.json()["error"]

    assert errors(pair="NOPEUSD", interval="60") == ["EQuery:Unknown asset pair"]
    assert client.get(OHLC, params={"pair": "NOPEUSD"}).json() == fixture("error_unknown_pair.json")
    assert errors(interval="60") == ["EGeneral:Invalid arguments"]
    assert errors(pair="XBTUSD,XETHZUSD", interval="60") == ["EGeneral:Invalid arguments"]
    for interval in ("7", "0", "120", "2880", "1h"):
        response = client.get(OHLC, params={"pair": "XBTUSD", "interval": interval})
        assert response.json() == {"error": ["EGeneral:Invalid arguments"], "result": {}}, interval
    assert errors(pair="XBTUSD", interval="60", since="yesterday") == ["EGeneral:Invalid arguments"]


# --- rate limit, faults, control ------------------------------------------------------------------------
def test_calls_beyond_the_rate_are_refused_in_the_body() -> None:
    # A fast rate keeps the test short; the default is Kraken's one call a second with a burst of 3.
    with KrakenSimulator(rate_limit_per_s=10, burst=2) as sim, httpx.Client(base_url=sim.base_url) as http:
        answers = [http.get(TICKER, params={"pair": "XBTUSD"}) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [a.json()["error"] for a in answers[:2]] == [[], []]
        assert answers[2].json() == TOO_MANY_REQUESTS
        time.sleep(0.15)  # one more call's worth of refill
        assert http.get(TICKER, params={"pair": "XBTUSD"}).json()["error"] == []
        assert http.get("/_simulator/faults").status_code == 200  # control routes are never limited


@pytest.mark.parametrize(
    ("fault", "options", "status", "body"),
    [
        ("rate_limit", {}, 200, TOO_MANY_REQUESTS),
        ("rate_limit", {"status": 429}, 429, TOO_MANY_REQUESTS),
        ("service_unavailable", {}, 200, {"error": ["EService:Unavailable"], "result": {}}),
        ("service_busy", {}, 200, {"error": ["EService:Busy"], "result": {}}),
        ("server_error", {"status": 502}, 502, None),
        ("invalid_json", {}, 200, None),
    ],
)
def test_response_faults(
    sim: KrakenSimulator, client: httpx.Client, fault: str, options: dict, status: int, body: Any
) -> None:
    sim.set_fault(fault, count=1, path=TICKER, **options)
    response = client.get(TICKER, params={"pair": "XBTUSD"})
    assert response.status_code == status
    if body is None:
        with pytest.raises(ValueError):
            response.json()
    else:
        assert response.json() == body
    assert client.get(TICKER, params={"pair": "XBTUSD"}).json()["error"] == []  # used up


def test_latency_fault_delays_answers(sim: KrakenSimulator, client: httpx.Client) -> None:
    sim.set_fault("latency", latency_ms=100, count=1)
    started = time.perf_counter()
    assert client.get(TICKER, params={"pair": "XBTUSD"}).status_code == 200
    assert time.perf_counter() - started >= 0.1


def test_bad_fault_settings_are_refused(sim: KrakenSimulator) -> None:
    for kind, options in [("nope", {}), ("server_error", {"status": 404}), ("rate_limit", {"status": 500})]:
        with pytest.raises(ValueError):
            sim.set_fault(kind, **options)


def test_pair_management(sim: KrakenSimulator, client: httpx.Client) -> None:
    sim.add_pair("XXRPZUSD", "XXRP", "ZUSD", price=0.52)
    entry = client.get(ASSET_PAIRS, params={"pair": "XRPUSD"}).json()["result"]["XXRPZUSD"]
    assert (entry["altname"], entry["wsname"], entry["status"]) == ("XRPUSD", "XRP/USD", "online")
    sim.set_status("XRPUSD", "post_only")
    assert (
        client.get(ASSET_PAIRS, params={"pair": "XXRPZUSD"}).json()["result"]["XXRPZUSD"]["status"]
        == "post_only"
    )
    sim.remove_pair("XXRPZUSD")
    assert client.get(TICKER, params={"pair": "XRPUSD"}).json() == fixture("error_unknown_pair.json")
    with pytest.raises(ValueError):
        sim.add_pair("XXBTZUSD", "XXBT", "ZUSD")
    with pytest.raises(ValueError):
        sim.set_status("XBTUSD", "open")


def test_http_control_endpoints(client: httpx.Client) -> None:
    fault = {"fault": "server_error", "status": 504, "count": 1, "path": TICKER}
    assert client.post("/_simulator/faults", json=fault).status_code == 200
    assert client.get("/_simulator/faults").json()["faults"][0]["kind"] == "server_error"
    assert client.get(TICKER).status_code == 504
    assert client.post("/_simulator/faults", json={"fault": "service_unavailable"}).status_code == 200
    assert client.get(TICKER).json()["error"] == ["EService:Unavailable"]  # until cleared
    assert client.delete("/_simulator/faults").status_code == 200
    assert client.get(TICKER).json()["error"] == []
    assert client.post("/_simulator/faults", json={"fault": "nope"}).status_code == 400

    add = {"action": "add", "key": "ADAUSD", "base": "ADA", "quote": "ZUSD", "price": 0.45}
    assert client.post("/_simulator/pairs", json=add).status_code == 200
    status = {"action": "set_status", "name": "ADAUSD", "status": "limit_only"}
    assert client.post("/_simulator/pairs", json=status).json()["pairs"]["ADAUSD"] == {
        "altname": "ADAUSD",
        "status": "limit_only",
    }
    client.post("/_simulator/pairs", json={"action": "remove", "name": "ADAUSD"})
    assert "ADAUSD" not in client.get("/_simulator/pairs").json()["pairs"]

    assert client.get("/_simulator/requests").json() != []
    assert client.delete("/_simulator/requests").status_code == 200
    assert client.get("/_simulator/requests").json() == []
    assert client.get("/_simulator/nothing").status_code == 404


def test_request_log_records_names_and_body_errors(sim: KrakenSimulator, client: httpx.Client) -> None:
    client.get(TICKER, params={"pair": "XBTUSD,ETHUSD"})
    client.get(TICKER, params={"pair": "XBTUSD,NOPE"})
    client.get("/_simulator/faults")  # control routes are not logged
    first, second = sim.requests
    assert (first.path, first.params, first.status, first.errors) == (
        TICKER,
        {"pair": ["XBTUSD", "ETHUSD"]},
        200,
        [],
    )
    assert (second.status, second.errors) == (200, ["EQuery:Unknown asset pair"])
    sim.reset_requests()
    assert sim.requests == []


# --- the adapter against the simulator over HTTP ----------------------------------------------------------
def test_adapter_lists_fetches_a_batch_and_parses_it(sim: KrakenSimulator, kraken: KrakenClient) -> None:
    # Given the listing
    by_pair = kraken.asset_pairs()
    assert {pair: info.symbol for pair, info in by_pair.items() if info.status == "online"} == {
        "BTC/USD": "XXBTZUSD",
        "ETH/USD": "XETHZUSD",
        "BTC/USDT": "XBTUSDT",
        "ETH/USDT": "ETHUSDT",
        "DOGE/USD": "XDGUSD",
        "SOL/USD": "SOLUSD",
        "USDT/USD": "USDTZUSD",
    }
    assert by_pair["ETH/BTC"].status == "cancel_only"
    # When the service's pairs are fetched in one request, with their rolling opens
    wanted = ["BTC/USD", "BTC/USDT", "ETH/USD", "ETH/USDT"]
    sim.reset_requests()
    raw = kraken.tickers([by_pair[pair].symbol for pair in wanted])
    assert len(sim.requests) == 1
    now_ms = int(time.time() * 1000)
    tickers = [
        parse_ticker(
            raw[by_pair[pair].symbol],
            pair,
            symbol=by_pair[pair].symbol,
            fetched_at=now_ms,
            open_24h=kraken.rolling_open(by_pair[pair].symbol, now_ms=now_ms),
        )
        for pair in wanted
    ]
    # Then each is a valid Ticker naming its source
    assert [(t.pair, t.exchange, t.symbol) for t in tickers] == [
        ("BTC/USD", "kraken", "XXBTZUSD"),
        ("BTC/USDT", "kraken", "XBTUSDT"),
        ("ETH/USD", "kraken", "XETHZUSD"),
        ("ETH/USDT", "kraken", "ETHUSDT"),
    ]
    assert all(t.low24h <= t.price <= t.high24h and abs(t.change24h) < 50 for t in tickers)


def test_rolling_open_is_the_candle_24_hours_before_the_current_hour(
    client: httpx.Client, kraken: KrakenClient
) -> None:
    now_ms = int(time.time() * 1000)
    candles = client.get(OHLC, params={"pair": "XDGUSD", "interval": "60"}).json()["result"]["XDGUSD"]
    target = now_ms // 1000 // HOUR_S * HOUR_S - 24 * HOUR_S
    expected = next(float(row[1]) for row in candles if row[0] == target)
    assert kraken.rolling_open("XDGUSD", now_ms=now_ms) == expected


@pytest.mark.parametrize(
    ("fault", "options", "kind"),
    [
        ("service_unavailable", {}, "unavailable"),
        ("service_busy", {}, "unavailable"),
        ("server_error", {"status": 503}, "http_5xx"),
        ("invalid_json", {}, "bad_body"),
        ("timeout", {"seconds": 2}, "timeout"),
    ],
)
def test_adapter_maps_simulated_faults_to_kinds(
    sim: KrakenSimulator, kraken: KrakenClient, fault: str, options: dict, kind: str
) -> None:
    sim.set_fault(fault, count=1, **options)
    with pytest.raises(ExchangeError) as raised:
        kraken.tickers(["XXBTZUSD"])
    assert raised.value.kind == kind


@pytest.mark.parametrize("status", [200, 429])
def test_adapter_raises_rate_limited_for_the_body_error(
    sim: KrakenSimulator, kraken: KrakenClient, status: int
) -> None:
    sim.set_fault("rate_limit", count=1, status=status)
    with pytest.raises(RateLimitedError) as raised:
        kraken.asset_pairs()
    assert raised.value.kind == "rate_limited" and raised.value.retry_after_s >= 1


def test_adapter_reports_an_unknown_pair_in_a_batch(kraken: KrakenClient) -> None:
    with pytest.raises(ExchangeError) as raised:
        kraken.tickers(["XXBTZUSD", "DOGEUSDT"])
    assert raised.value.kind == "unknown_pair"


def test_adapter_is_refused_beyond_the_simulated_rate() -> None:
    with KrakenSimulator(rate_limit_per_s=5, burst=1) as sim, httpx.Client(timeout=2) as http:
        kraken = KrakenClient(http, sim.base_url)
        kraken.tickers(["XXBTZUSD"])
        with pytest.raises(RateLimitedError):
            kraken.tickers(["XXBTZUSD"])


def test_command_line_serves_until_interrupted() -> None:
    args = ("--seed", "3", "--latency-ms", "50")
    with command_line_process("local_stack.kraken_simulator", *args) as (base_url, interrupt):
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
        started = time.perf_counter()
        response = httpx.get(base_url + TICKER, params={"pair": "XBTUSD"}, verify=SSL_CONTEXT, timeout=5)
        assert response.json()["error"] == [] and time.perf_counter() - started >= 0.05
        assert interrupt() == 0


def test_asset_pairs_have_exactly_the_documented_fixture_shape(client: httpx.Client) -> None:
    expected = fixture("asset_pairs_excerpt.json")
    documented = list(expected["result"].values())
    body = client.get(ASSET_PAIRS).json()
    assert body["error"] == []
    for key, entry in body["result"].items():
        # the keys of a documented entry, in its order, each of the same JSON type
        assert any(list(entry) == list(example) for example in documented), key
        assert shape_but_lists(entry) in [shape_but_lists(example) for example in documented], key


def shape_but_lists(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry's shape with list lengths left out (fee tiers differ in number from pair to pair)."""
    return {key: "list" if isinstance(value, list) else type(value).__name__ for key, value in entry.items()}


def test_ohlc_candles_have_exactly_the_documented_fixture_shape(client: httpx.Client) -> None:
    expected = fixture("ohlc_XBTUSD.json")
    documented_candle = next(value for key, value in expected["result"].items() if key != "last")[0]
    body = client.get(OHLC, params={"pair": "XBTUSD", "interval": "60"}).json()
    candles = next(value for key, value in body["result"].items() if key != "last")
    assert candles and all(shape(candle) == shape(documented_candle) for candle in candles)
    assert shape(body["result"]["last"]) == shape(expected["result"]["last"])


def test_the_adapter_reads_the_documented_listing_and_candles() -> None:
    from fetcher.exchanges.kraken import KrakenClient as Client
    from tests.support import answering_http

    http, _ = answering_http(200, (KRAKEN / "asset_pairs_excerpt.json").read_bytes())
    listing = Client(http, "https://api.kraken.test").asset_pairs()
    for key, entry in fixture("asset_pairs_excerpt.json")["result"].items():
        found = [item for item in listing.values() if item.symbol == key]
        assert found and found[0].trading == (entry["status"] == "online"), key
    http, _ = answering_http(200, (KRAKEN / "ohlc_XBTUSD.json").read_bytes())
    # The documented candles are from 2023-07-06; 24 h later the open of the hour 24 h back is asked.
    first_hour_ms = 1688671200 * 1000
    assert (
        Client(http, "https://api.kraken.test").rolling_open("XBTUSD", now_ms=first_hour_ms + 86_400_000)
        == 30306.1
    )


# --- OHLC at every interval -------------------------------------------------------------------------------
INTERVALS = [1, 5, 15, 30, 60, 240, 1440]  # minutes


def ohlc(client: httpx.Client, **params: str) -> dict[str, Any]:
    response = client.get(OHLC, params=params)
    assert response.status_code == 200 and response.json()["error"] == [], response.text
    return response.json()["result"]


def test_ohlc_rows_match_the_fixture_field_by_field(client: httpx.Client) -> None:
    expected = fixture("ohlc_XBTUSD.json")["result"]
    documented = expected["XXBTZUSD"][0]
    result = ohlc(client, pair="XBTUSD")  # 1 minute by default, as the fixture's
    assert list(result) == list(expected)  # the pair's key, then `last`
    assert type(result["last"]) is type(expected["last"])
    rows = result["XXBTZUSD"]
    assert rows[1][0] - rows[0][0] == 60
    for row in rows:  # [time, open, high, low, close, vwap, volume, count]
        assert [type(value) for value in row] == [type(value) for value in documented], row
        assert all(re.fullmatch(r"\d+\.\d{5}", price) for price in row[1:6]), row
        assert re.fullmatch(r"\d+\.\d{8}", row[6]), row


@pytest.mark.parametrize("interval", INTERVALS)
def test_ohlc_answers_the_last_720_oldest_first_ending_with_the_one_in_progress(
    client: httpx.Client, interval: int
) -> None:
    step = interval * 60
    before = time.time()
    result = ohlc(client, pair="XXBTZUSD", interval=str(interval), since="0")  # 720 at most, whatever since
    after = time.time()
    rows = result["XXBTZUSD"]
    starts = [row[0] for row in rows]
    assert len(rows) == 720 and starts[0] % step == 0
    assert starts == list(range(starts[0], starts[0] + 720 * step, step))
    assert starts[-1] <= after and starts[-1] + step > before  # in progress: nothing after now
    assert result["last"] == starts[-2]  # the cursor: the newest closed one
    for _start, open_, high, low, close, vwap, volume, count in rows:
        o, h, lo, c, vw = map(Decimal, (open_, high, low, close, vwap))
        assert 0 < lo <= min(o, c) <= max(o, c) <= h and lo <= vw <= h
        assert Decimal(volume) > 0 and count > 0


def test_ohlc_answers_only_what_follows_since(client: httpx.Client) -> None:
    step = 300
    rows = ohlc(client, pair="XBTUSD", interval="5")["XXBTZUSD"]
    since = rows[-10][0]
    later = ohlc(client, pair="XBTUSD", interval="5", since=str(since))
    starts = [row[0] for row in later["XXBTZUSD"]]
    assert starts == list(range(since + step, since + step * (len(starts) + 1), step))
    assert len(starts) in (9, 10)  # 10 when five minutes turned in between
    polled = ohlc(client, pair="XBTUSD", interval="5", since=str(later["last"]))
    assert [row[0] for row in polled["XXBTZUSD"]][:1] == [later["last"] + step]  # the one in progress
    future = ohlc(client, pair="XBTUSD", interval="5", since=str(int(time.time()) + 3600))
    assert future["XXBTZUSD"] == [] and future["last"] >= later["last"]


def test_the_newest_candle_closes_at_the_last_price_and_all_stay_near_it(
    sim: KrakenSimulator, client: httpx.Client
) -> None:
    sim.set_status("XBTUSD", "maintenance")  # no trade between the reads
    last = client.get(TICKER, params={"pair": "XBTUSD"}).json()["result"]["XXBTZUSD"]["c"][0]
    for interval in INTERVALS:
        assert ohlc(client, pair="XBTUSD", interval=str(interval))["XXBTZUSD"][-1][4] == last
    for key in ("XETHZUSD", "XDGUSD", "XETHXXBT"):
        price = Decimal(client.get(TICKER, params={"pair": key}).json()["result"][key]["c"][0])
        for interval in ("1", "60", "1440"):
            rows = ohlc(client, pair=key, interval=interval)[key]
            low, high = price * Decimal("0.85"), price * Decimal("1.15")
            assert all(low < Decimal(row[4]) < high for row in rows), (key, interval)


def test_an_hour_is_exactly_its_minutes_on_every_request(client: httpx.Client) -> None:
    hour = ohlc(client, pair="XBTUSD", interval="60")["XXBTZUSD"][-3]  # closed, within 720 minutes
    minutes = [
        row
        for row in ohlc(client, pair="XBTUSD", interval="1")["XXBTZUSD"]
        if hour[0] <= row[0] < hour[0] + HOUR_S
    ]
    assert len(minutes) == 60
    assert (hour[1], hour[4]) == (minutes[0][1], minutes[-1][4])
    assert Decimal(hour[2]) == max(Decimal(row[2]) for row in minutes)
    assert Decimal(hour[3]) == min(Decimal(row[3]) for row in minutes)
    assert hour[7] == sum(row[7] for row in minutes)
    assert float(hour[6]) == pytest.approx(sum(float(row[6]) for row in minutes), rel=1e-6)
    time.sleep(0.3)
    again = ohlc(client, pair="XBTUSD", interval="1", since=str(hour[0] - 60))["XXBTZUSD"]
    assert again[:60] == minutes  # closed candles do not change


def test_closed_candles_come_from_the_seed(client: httpx.Client) -> None:
    hour = int(time.time()) // HOUR_S * HOUR_S
    ours = ohlc(client, pair="XETHZUSD", interval="15")["XETHZUSD"]
    closed = [row for row in ours if row[0] < hour - HOUR_S]
    for seed, same in ((7, True), (8, False)):
        with KrakenSimulator(seed=seed, rate_limit_per_s=None) as other:
            url = other.base_url + OHLC
            theirs = httpx.get(url, params={"pair": "XETHZUSD", "interval": "15"}, verify=SSL_CONTEXT).json()
        assert ([row for row in theirs["result"]["XETHZUSD"] if row[0] < hour - HOUR_S] == closed) == same


def test_ohlc_calls_count_against_the_rate_limit() -> None:
    with KrakenSimulator(rate_limit_per_s=1, burst=2) as sim, httpx.Client(base_url=sim.base_url) as http:
        answers = [http.get(OHLC, params={"pair": "XBTUSD", "interval": "1"}).json() for _ in range(3)]
        assert [answer["error"] for answer in answers[:2]] == [[], []]
        assert answers[2] == TOO_MANY_REQUESTS
