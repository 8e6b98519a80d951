"""The Binance simulator over real HTTP, held to the documented payloads in shared/fixtures/binance."""

import json
import re
import threading
import time
from decimal import Decimal
from functools import partial
from pathlib import Path

import httpx
import pytest

from local_stack.binance_simulator import BinanceSimulator
from local_stack.simulator_http import command_line_process
from tests.support import simulator_fixtures

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures" / "binance"
TICKER = "/api/v3/ticker/24hr"
EXCHANGE_INFO = "/api/v3/exchangeInfo"
DEFAULT_SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "ETHBTC"]
# Written out here rather than imported, so the simulator cannot drift from what Binance sends.
ILLEGAL_SYMBOLS_MSG = (
    "Illegal characters found in parameter 'symbols'; legal range is "
    """'^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$'."""
)
BANNED_RE = re.compile(r"Way too much request weight used; IP banned until (\d+)\.")
LIMIT_MSG = "Data sent for parameter 'limit' is not valid."
MANDATORY_MSG = "Mandatory parameter '{}' was not sent, was empty/null, or malformed."
# Loading CA certificates costs ~0.15 s per httpx client; the simulator is plain HTTP, so share one context.
SSL_CONTEXT = httpx.create_ssl_context()


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


def encode(names: list[str]) -> str:
    return json.dumps(names, separators=(",", ":"))


def used(response: httpx.Response) -> int:
    return int(response.headers["X-MBX-USED-WEIGHT-1M"])


def types(obj: dict) -> dict[str, type]:
    return {key: type(value) for key, value in obj.items()}


def wait_for_window_start(window_s: float, needed_s: float) -> None:
    """Sleep past the next weight-window boundary unless `needed_s` fit before it (one window each)."""
    remaining = window_s - time.time() % window_s
    if remaining < needed_s:
        time.sleep(remaining + 0.02)


# The simulator on a free loopback port, and a plain-HTTP client on it.
sim, client = simulator_fixtures(partial(BinanceSimulator, seed=7), SSL_CONTEXT)


# --- payload shapes ----------------------------------------------------------------------------------
def test_full_ticker_has_exactly_the_fixture_keys_and_types(client):
    expected = fixture("ticker_24hr_BTCUSDT.json")
    response = client.get(TICKER, params={"symbol": "BTCUSDT"})
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, dict)  # symbol= answers one object
    assert list(body) == list(expected)
    assert types(body) == types(expected)
    assert body["symbol"] == "BTCUSDT"


def test_mini_ticker_has_exactly_the_fixture_keys_and_types(client):
    expected = fixture("ticker_24hr_mini_example.json")
    response = client.get(TICKER, params={"symbols": encode(["ETHUSDT", "BTCUSDT"]), "type": "MINI"})
    assert response.status_code == 200
    rows = response.json()
    assert [row["symbol"] for row in rows] == ["ETHUSDT", "BTCUSDT"]
    for row in rows:
        assert list(row) == list(expected)
        assert types(row) == types(expected)


def test_symbols_answers_an_array_in_the_requested_order_and_tolerates_spaces(client):
    names = ["DOGEUSDT", "BTCUSDT", "ETHBTC"]
    response = client.get(TICKER, params={"symbols": json.dumps(names)})  # '["DOGEUSDT", "BTCUSDT", ...]'
    assert response.status_code == 200
    assert [row["symbol"] for row in response.json()] == names


def test_no_symbol_parameter_answers_every_symbol(sim, client):
    rows = client.get(TICKER).json()
    assert sim.symbols == DEFAULT_SYMBOLS
    assert [row["symbol"] for row in rows] == DEFAULT_SYMBOLS


def test_numbers_are_finite_decimals_and_consistent(client):
    now_ms = time.time() * 1000
    for row in client.get(TICKER).json():
        assert row["closeTime"] - row["openTime"] == 86_400_000
        assert abs(row["closeTime"] - now_ms) < 5_000
        numbers = {key: Decimal(value) for key, value in row.items() if key != "symbol"}
        assert all(number.is_finite() for number in numbers.values())
        for key, value in row.items():
            if isinstance(value, str) and key != "symbol":
                decimals = 3 if key == "priceChangePercent" else 8
                assert re.fullmatch(rf"-?\d+\.\d{{{decimals}}}", value), (key, value)
        n = numbers
        assert n["highPrice"] >= n["lastPrice"] >= n["lowPrice"] > 0
        assert n["highPrice"] >= n["openPrice"] >= n["lowPrice"]
        assert n["priceChange"] == n["lastPrice"] - n["openPrice"]
        assert n["priceChangePercent"] == (100 * n["priceChange"] / n["openPrice"]).quantize(Decimal("0.001"))
        assert n["lowPrice"] <= n["weightedAvgPrice"] <= n["highPrice"]
        assert float(n["quoteVolume"]) == pytest.approx(float(n["volume"] * n["weightedAvgPrice"]), rel=1e-6)
        assert 0 < n["bidPrice"] <= n["lastPrice"] <= n["askPrice"]
        assert n["bidPrice"] < n["askPrice"]
        assert n["volume"] > 0 and n["lastQty"] > 0 and n["bidQty"] > 0 and n["askQty"] > 0
        assert row["count"] == row["lastId"] - row["firstId"] + 1 > 0


def test_exchange_info_has_the_fixture_shape(client):
    expected = fixture("exchange_info_excerpt.json")
    response = client.get(EXCHANGE_INFO)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == list(expected)
    assert types(body) == types(expected)
    assert body["rateLimits"] == expected["rateLimits"]  # REQUEST_WEIGHT 6000 per 1 MINUTE by default
    expected_symbol = expected["symbols"][0]
    for entry in body["symbols"]:
        assert list(entry) == list(expected_symbol)
        assert types(entry) == types(expected_symbol)
    by_name = {entry["symbol"]: entry for entry in body["symbols"]}
    assert list(by_name) == DEFAULT_SYMBOLS
    assert (by_name["ETHBTC"]["status"], by_name["ETHBTC"]["baseAsset"], by_name["ETHBTC"]["quoteAsset"]) == (
        "BREAK",
        "ETH",
        "BTC",
    )
    assert all(entry["status"] == "TRADING" for name, entry in by_name.items() if name != "ETHBTC")
    assert all(entry["quoteAsset"] != "USD" for entry in body["symbols"])  # binance.com lists no USD pairs


def test_exchange_info_filters_by_symbols_and_rejects_unknown_names(client):
    response = client.get(EXCHANGE_INFO, params={"symbols": encode(["ETHBTC", "BTCUSDT"])})
    assert [entry["symbol"] for entry in response.json()["symbols"]] == ["ETHBTC", "BTCUSDT"]
    single = client.get(EXCHANGE_INFO, params={"symbol": "SOLUSDT"}).json()
    assert [entry["symbol"] for entry in single["symbols"]] == ["SOLUSDT"]
    for params in ({"symbol": "BTCUSD"}, {"symbols": encode(["BTCUSDT", "BTCUSD"])}):
        response = client.get(EXCHANGE_INFO, params=params)
        assert response.status_code == 400
        assert response.json() == fixture("error_invalid_symbol.json")


def test_exchange_info_reports_the_configured_weight_limit():
    with BinanceSimulator(weight_limit=1200) as simulator:
        body = httpx.get(simulator.base_url + EXCHANGE_INFO, verify=SSL_CONTEXT).json()
    assert body["rateLimits"][0] == {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": 1200,
    }


def test_seed_fixes_the_starting_market():
    def opens(seed: int) -> list[str]:
        with BinanceSimulator(seed=seed) as simulator:
            rows = httpx.get(simulator.base_url + TICKER, verify=SSL_CONTEXT).json()
        return [row["openPrice"] for row in rows]

    assert opens(3) == opens(3)
    assert opens(3) != opens(4)


# --- errors --------------------------------------------------------------------------------------------
def test_one_unknown_name_fails_the_whole_request_with_the_fixture_body(client):
    response = client.get(TICKER, params={"symbols": encode(["BTCUSDT", "BTCUSD", "ETHUSDT"])})
    assert response.status_code == 400
    assert response.json() == fixture("error_invalid_symbol.json")
    assert response.content == (FIXTURES / "error_invalid_symbol.json").read_bytes().strip()  # compact JSON
    single = client.get(TICKER, params={"symbol": "BTCUSD"})
    assert (single.status_code, single.json()) == (400, fixture("error_invalid_symbol.json"))


@pytest.mark.parametrize(
    "raw",
    [
        "BTCUSDT",
        '["btcusdt"]',
        '["BTCUSDT",1]',
        '{"symbol":"BTCUSDT"}',
        '["BTC USDT"]',
        '["' + "A" * 21 + '"]',
    ],
)
def test_malformed_symbols_parameter_is_rejected_with_1100(client, raw):
    response = client.get(TICKER, params={"symbols": raw})
    assert response.status_code == 400
    assert response.json() == {"code": -1100, "msg": ILLEGAL_SYMBOLS_MSG}


def test_symbol_and_symbols_together_are_rejected_with_1128(client):
    response = client.get(TICKER, params={"symbol": "BTCUSDT", "symbols": encode(["ETHUSDT"])})
    assert response.status_code == 400
    assert response.json() == {"code": -1128, "msg": "Combination of optional parameters invalid."}


def test_restricted_location_answers_451_with_the_fixture_body(sim, client):
    sim.set_fault("restricted")
    for path in (TICKER, EXCHANGE_INFO):
        response = client.get(path)
        assert response.status_code == 451
        assert response.json() == fixture("error_451_restricted_location.json")
        assert "X-MBX-USED-WEIGHT-1M" in response.headers


# --- request weight, 429 and 418 -----------------------------------------------------------------------
def test_used_weight_is_on_every_response_and_charged_by_symbol_count(sim, client):
    generated = sim.add_generated_symbols(120)
    wait_for_window_start(60, needed_s=2)
    steps = [
        ({"symbol": "BTCUSDT"}, TICKER, 2),
        ({"symbols": encode(generated[:20])}, TICKER, 2),
        ({"symbols": encode(generated[:21])}, TICKER, 40),
        ({"symbols": encode(generated[:100])}, TICKER, 40),
        ({"symbols": encode(generated[:101])}, TICKER, 80),
        ({}, TICKER, 80),
        ({}, EXCHANGE_INFO, 20),
        ({"symbols": encode(["BTCUSDT", "NOPE"])}, TICKER, 2),  # failed requests are charged too
        ({}, "/api/v3/unknown", 0),
    ]
    total = 0
    for params, path, weight in steps:
        response = client.get(path, params=params)
        total += weight
        assert used(response) == total, (path, params)
        assert response.headers["X-MBX-USED-WEIGHT"] == response.headers["X-MBX-USED-WEIGHT-1M"]
    assert response.status_code == 404 and "code" in response.json()
    assert sim.used_weight == total == 266


def test_429_then_418_for_a_client_that_keeps_calling(tmp_path):
    expected_429, expected_418 = fixture("error_429_too_much_weight.json"), fixture("error_418_banned.json")
    assert BANNED_RE.fullmatch(expected_418["msg"])
    with (
        BinanceSimulator(weight_limit=10, ban_seconds=0.4, weight_window_s=1.0) as simulator,
        httpx.Client(verify=SSL_CONTEXT, base_url=simulator.base_url, timeout=5) as client,
    ):
        wait_for_window_start(1.0, needed_s=1.0)  # start right after a boundary of the 1 s window
        for call in range(1, 6):
            response = client.get(TICKER, params={"symbol": "BTCUSDT"})
            assert (response.status_code, used(response)) == (200, 2 * call)

        limited = client.get(TICKER, params={"symbol": "BTCUSDT"})
        assert limited.status_code == 429
        assert limited.json() == {
            "code": expected_429["code"],
            "msg": expected_429["msg"].replace("6000", "10"),
        }
        assert int(limited.headers["Retry-After"]) == 1
        assert used(limited) == 10

        banned = client.get(TICKER, params={"symbol": "BTCUSDT"})  # did not wait for Retry-After
        assert banned.status_code == 418
        assert banned.json()["code"] == expected_418["code"]
        until_ms = int(BANNED_RE.fullmatch(banned.json()["msg"]).group(1))
        assert 300 <= until_ms - time.time() * 1000 <= 1_000
        assert int(banned.headers["Retry-After"]) >= 1
        assert "X-MBX-USED-WEIGHT-1M" in banned.headers
        assert client.get(EXCHANGE_INFO).status_code == 418  # the ban covers every endpoint

        window_end = (int(time.time()) + 1) * 1.0
        time.sleep(max(until_ms / 1000, window_end) - time.time() + 0.05)
        recovered = client.get(TICKER, params={"symbol": "BTCUSDT"})
        assert (recovered.status_code, used(recovered)) == (200, 2)
        statuses = [record.status for record in simulator.requests]
        assert statuses == [200] * 5 + [429, 418, 418, 200]
        assert [record.weight for record in simulator.requests][5:8] == [0, 0, 0]


def test_a_client_that_honours_retry_after_is_not_banned():
    with (
        BinanceSimulator(weight_limit=4, ban_seconds=30, weight_window_s=1.0) as simulator,
        httpx.Client(verify=SSL_CONTEXT, base_url=simulator.base_url, timeout=5) as client,
    ):
        wait_for_window_start(1.0, needed_s=1.0)
        assert client.get(TICKER, params={"symbol": "BTCUSDT"}).status_code == 200
        assert client.get(TICKER, params={"symbol": "BTCUSDT"}).status_code == 200
        limited = client.get(TICKER, params={"symbol": "BTCUSDT"})
        assert limited.status_code == 429
        time.sleep(int(limited.headers["Retry-After"]))
        assert client.get(TICKER, params={"symbol": "BTCUSDT"}).status_code == 200


# --- faults --------------------------------------------------------------------------------------------
def test_count_scoped_fault_clears_itself_and_keeps_to_its_path(sim, client):
    sim.set_fault("server_error", status=503, count=2, path=TICKER)
    assert client.get(EXCHANGE_INFO).status_code == 200  # another path: unaffected, count not used
    for _ in range(2):
        response = client.get(TICKER, params={"symbol": "BTCUSDT"})
        assert response.status_code == 503
        assert response.json() == {
            "code": -1001,
            "msg": "Internal error; unable to process your request. Please try again.",
        }
        assert "X-MBX-USED-WEIGHT-1M" in response.headers
    assert client.get(TICKER, params={"symbol": "BTCUSDT"}).status_code == 200


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_answer_the_given_status(sim, client, status):
    sim.set_fault("server_error", status=status)
    for _ in range(2):  # until cleared
        assert client.get(TICKER).status_code == status
    sim.clear_faults()
    assert client.get(TICKER).status_code == 200


@pytest.mark.parametrize("kind", ["invalid_json", "truncated"])
def test_unparseable_200_bodies(sim, client, kind):
    sim.set_fault(kind, count=1)
    response = client.get(TICKER, params={"symbol": "BTCUSDT"})
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    if kind == "truncated":
        assert response.text.startswith('{"symbol":"BTCUSDT","priceChange":"')
    assert client.get(TICKER, params={"symbol": "BTCUSDT"}).json()["symbol"] == "BTCUSDT"


def test_rate_limit_fault_escalates_to_a_ban_and_ban_fault_answers_418(sim, client):
    sim.set_fault("rate_limit", retry_after=3, count=1)
    limited = client.get(TICKER)
    assert (limited.status_code, limited.headers["Retry-After"], limited.json()["code"]) == (429, "3", -1003)
    assert client.get(TICKER).status_code == 418  # called again within Retry-After
    sim.clear_faults()  # also forgives the ban
    assert client.get(TICKER).status_code == 200

    sim.set_fault("ban", retry_after=7, count=1)
    banned = client.get(TICKER)
    assert (banned.status_code, banned.headers["Retry-After"]) == (418, "7")
    assert BANNED_RE.fullmatch(banned.json()["msg"])
    assert client.get(TICKER).status_code == 200


def test_latency_and_timeout_faults(sim, client):
    sim.set_fault("latency", latency_ms=200, count=1)
    started = time.perf_counter()
    assert client.get(TICKER, params={"symbol": "BTCUSDT"}).status_code == 200
    delayed = time.perf_counter() - started
    assert delayed >= 0.2
    started = time.perf_counter()
    client.get(TICKER, params={"symbol": "BTCUSDT"})
    # The fault was used up: the next answer is not held back (compared with the held one, not with
    # a fixed bound a loaded machine could pass).
    assert time.perf_counter() - started < delayed - 0.1

    sim.set_fault("timeout", seconds=5, count=1, path=TICKER)
    with pytest.raises(httpx.ReadTimeout):
        client.get(TICKER, params={"symbol": "BTCUSDT"}, timeout=0.3)
    assert client.get(TICKER, params={"symbol": "BTCUSDT"}).status_code == 200


@pytest.mark.parametrize(
    ("kind", "is_bad"),
    [
        ("zero", lambda row: row["lastPrice"] == "0.00000000"),
        ("negative", lambda row: Decimal(row["lastPrice"]) < 0),
        ("nan", lambda row: row["lastPrice"] == "NaN"),
        ("high_below_low", lambda row: Decimal(row["highPrice"]) < Decimal(row["lowPrice"])),
    ],
)
def test_bad_ticker_corrupts_only_its_symbol(sim, client, kind, is_bad):
    sim.set_bad_ticker("ETHUSDT", kind)
    for ticker_type in ("FULL", "MINI"):
        params = {"symbols": encode(["BTCUSDT", "ETHUSDT"]), "type": ticker_type}
        healthy, bad = client.get(TICKER, params=params).json()
        assert is_bad(bad)
        assert not is_bad(healthy)
    sim.set_bad_ticker("ETHUSDT", None)
    assert not is_bad(client.get(TICKER, params={"symbol": "ETHUSDT"}).json())


# --- market behaviour, symbols, request log ---------------------------------------------------------------
def test_prices_move_over_time_but_not_for_a_market_in_break(client):
    first = {row["symbol"]: row for row in client.get(TICKER).json()}
    time.sleep(1.0)
    second = {row["symbol"]: row for row in client.get(TICKER).json()}
    assert any(first[name]["lastPrice"] != second[name]["lastPrice"] for name in first)
    assert first["ETHBTC"]["lastPrice"] == second["ETHBTC"]["lastPrice"]  # BREAK: no trading
    for name, row in second.items():
        assert Decimal(row["highPrice"]) >= Decimal(first[name]["highPrice"])
        assert Decimal(row["lowPrice"]) <= Decimal(first[name]["lowPrice"])
        assert row["lastId"] >= first[name]["lastId"]


def test_symbol_management(sim, client):
    sim.set_status("BNBUSDT", "HALT")
    info = client.get(EXCHANGE_INFO, params={"symbol": "BNBUSDT"}).json()
    assert info["symbols"][0]["status"] == "HALT"
    sim.remove_symbol("XRPUSDT")
    for path in (TICKER, EXCHANGE_INFO):
        response = client.get(path, params={"symbols": encode(["BTCUSDT", "XRPUSDT"])})
        assert (response.status_code, response.json()) == (400, fixture("error_invalid_symbol.json"))
    sim.add_symbol("PEPEUSDT", "PEPE", "USDT", price=0.00001)
    assert Decimal(client.get(TICKER, params={"symbol": "PEPEUSDT"}).json()["lastPrice"]) > 0
    assert sim.add_generated_symbols(2) == ["SYM0001USDT", "SYM0002USDT"]
    assert sim.add_generated_symbols(1) == ["SYM0003USDT"]
    entry = client.get(EXCHANGE_INFO, params={"symbol": "SYM0003USDT"}).json()["symbols"][0]
    assert (entry["baseAsset"], entry["quoteAsset"], entry["status"]) == ("SYM0003", "USDT", "TRADING")
    with pytest.raises(ValueError):
        sim.add_symbol("BTCUSDT", "BTC", "USDT")
    with pytest.raises(ValueError):
        sim.set_status("BTCUSDT", "OPEN")


def test_request_log_records_decoded_symbols_and_skips_control_routes(sim, client):
    wait_for_window_start(60, needed_s=2)
    client.get(TICKER, params={"symbols": encode(["ETHUSDT", "BTCUSDT"]), "type": "MINI"})
    client.get(TICKER, params={"symbols": encode(["ETHUSDT", "NOPE"])})
    weight_before = sim.used_weight
    over_http = client.get("/_simulator/requests")
    assert "X-MBX-USED-WEIGHT-1M" not in over_http.headers
    assert sim.used_weight == weight_before == 4
    first, second = sim.requests
    assert (first.method, first.path, first.status, first.weight) == ("GET", TICKER, 200, 2)
    assert first.params == {"symbols": ["ETHUSDT", "BTCUSDT"], "type": "MINI"}
    assert (second.status, second.params["symbols"]) == (400, ["ETHUSDT", "NOPE"])
    assert first.monotonic <= second.monotonic and abs(second.wall_time - time.time()) < 5
    assert [record["params"]["symbols"] for record in over_http.json()] == [
        ["ETHUSDT", "BTCUSDT"],
        ["ETHUSDT", "NOPE"],
    ]
    sim.reset_requests()
    assert sim.requests == []


def test_http_control_endpoints(sim, client):
    fault = {"fault": "server_error", "status": 502, "count": 1, "path": TICKER}
    assert client.post("/_simulator/faults", json=fault).status_code == 200
    assert client.get("/_simulator/faults").json()["faults"][0]["kind"] == "server_error"
    assert client.get(TICKER).status_code == 502
    assert client.get("/_simulator/faults").json()["faults"] == []  # used up

    assert (
        client.post("/_simulator/faults", json={"fault": "rate_limit", "retry_after": 2}).status_code == 200
    )
    assert [client.get(TICKER).status_code for _ in range(2)] == [429, 429]  # until cleared
    assert client.delete("/_simulator/faults").status_code == 200
    assert client.get(TICKER).status_code == 200

    client.post("/_simulator/faults", json={"fault": "bad_ticker", "symbol": "BTCUSDT", "kind": "nan"})
    assert client.get(TICKER, params={"symbol": "BTCUSDT"}).json()["lastPrice"] == "NaN"
    assert client.get("/_simulator/faults").json()["bad_tickers"] == {"BTCUSDT": "nan"}
    assert client.post("/_simulator/faults", json={"fault": "nope"}).status_code == 400
    assert client.post("/_simulator/faults", content=b"not json").status_code == 400

    add = {"action": "add", "symbol": "PEPEUSDT", "base": "PEPE", "quote": "USDT", "price": 0.00001}
    assert client.post("/_simulator/symbols", json=add).status_code == 200
    assert client.get(TICKER, params={"symbol": "PEPEUSDT"}).status_code == 200
    client.post("/_simulator/symbols", json={"action": "set_status", "symbol": "PEPEUSDT", "status": "HALT"})
    info = client.get(EXCHANGE_INFO, params={"symbol": "PEPEUSDT"}).json()
    assert info["symbols"][0]["status"] == "HALT"
    client.post("/_simulator/symbols", json={"action": "remove", "symbol": "PEPEUSDT"})
    assert client.get(TICKER, params={"symbol": "PEPEUSDT"}).json() == fixture("error_invalid_symbol.json")
    generated = client.post("/_simulator/symbols", json={"action": "generate", "n": 3}).json()
    assert [entry["symbol"] for entry in generated["symbols"]][-3:] == [
        "SYM0001USDT",
        "SYM0002USDT",
        "SYM0003USDT",
    ]
    assert client.get("/_simulator/symbols").json()["symbols"][0] == {
        "symbol": "BTCUSDT",
        "baseAsset": "BTC",
        "quoteAsset": "USDT",
        "status": "TRADING",
    }

    assert client.get("/_simulator/requests").json() != []
    assert client.delete("/_simulator/requests").status_code == 200
    assert client.get("/_simulator/requests").json() == []
    assert client.get("/_simulator/nothing").status_code == 404


def test_concurrent_clients_are_all_served_and_counted(sim):
    def worker() -> None:
        with httpx.Client(verify=SSL_CONTEXT, base_url=sim.base_url, timeout=5) as http:
            for _ in range(10):
                assert http.get(TICKER, params={"symbol": "SOLUSDT"}).status_code == 200

    wait_for_window_start(60, needed_s=3)
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    records = sim.requests
    assert len(records) == 80 and all(record.status == 200 for record in records)
    assert sim.used_weight == 160


def test_command_line_serves_until_interrupted():
    args = ("--seed", "3", "--latency-ms", "50")
    with command_line_process("local_stack.binance_simulator", *args) as (base_url, interrupt):
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
        started = time.perf_counter()
        response = httpx.get(base_url + TICKER, params={"symbol": "BTCUSDT"}, verify=SSL_CONTEXT)
        assert response.status_code == 200
        assert time.perf_counter() - started >= 0.05
        assert interrupt() == 0


def test_binance_us_is_the_same_protocol_under_its_own_name_and_smaller_weight_budget():
    from fetcher.exchanges.binance import BINANCE_US, BINANCE_US_WEIGHT_LIMIT_1M, BinanceClient, parse_ticker

    with (
        BinanceSimulator(seed=3, weight_limit=BINANCE_US_WEIGHT_LIMIT_1M) as us,
        httpx.Client(timeout=2.0) as http,
    ):
        client = BinanceClient(
            http, us.base_url, name=BINANCE_US, default_weight_limit_1m=BINANCE_US_WEIGHT_LIMIT_1M
        )
        info = client.exchange_info()
        [raw] = client.tickers([info.by_pair["BTC/USDT"].symbol])

    assert info.weight_limit_1m == BINANCE_US_WEIGHT_LIMIT_1M  # the listing's own figure
    ticker = parse_ticker(raw, "BTC/USDT", fetched_at=raw["closeTime"], exchange=client.name)
    assert (ticker.exchange, ticker.symbol) == ("binance_us", "BTCUSDT")


# --- klines ----------------------------------------------------------------------------------------------
KLINES = "/api/v3/klines"
KLINE_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000, "1d": 86_400_000}
KLINE_DECIMALS = (1, 2, 3, 4, 5, 7, 9, 10)  # the fields that are decimals in strings


def klines(client, **params) -> list[list]:
    response = client.get(KLINES, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def assert_consistent_klines(rows: list[list], step_ms: int) -> None:
    for row in rows:
        open_, high, low, close, volume, quote, bought, _ = (Decimal(row[i]) for i in KLINE_DECIMALS)
        assert 0 < low <= min(open_, close) <= max(open_, close) <= high, row
        assert volume > 0 and row[8] > 0 and 0 <= bought <= volume, row
        assert low - Decimal("0.01") <= quote / volume <= high + Decimal("0.01"), row  # a price in range
        assert row[6] == row[0] + step_ms - 1  # the close time: the interval's last ms


def test_klines_have_exactly_the_fixture_shape(client):
    [documented] = fixture("klines_example.json")
    rows = klines(client, symbol="BTCUSDT", interval="1m")
    assert len(rows) == 500  # the default limit
    for row in rows:
        assert [type(value) for value in row] == [type(value) for value in documented]
        assert all(re.fullmatch(r"\d+\.\d{8}", row[i]) for i in KLINE_DECIMALS), row
        assert row[11] == "0"


@pytest.mark.parametrize("interval", list(KLINE_MS))
def test_klines_are_aligned_oldest_first_and_end_with_the_one_in_progress(client, interval):
    step = KLINE_MS[interval]
    before = int(time.time() * 1000)
    rows = klines(client, symbol="BTCUSDT", interval=interval, limit=1000)
    after = int(time.time() * 1000)
    opens = [row[0] for row in rows]
    assert len(rows) == 1000 and opens[0] % step == 0
    assert opens == list(range(opens[0], opens[0] + 1000 * step, step))
    assert opens[-1] <= after and rows[-1][6] >= before  # opened by now, closing after it: in progress
    assert_consistent_klines(rows, step)


def test_the_newest_kline_closes_at_the_ticker_price_and_all_stay_near_it(sim, client):
    sim.set_status("BTCUSDT", "BREAK")  # no trade between the reads
    last = client.get(TICKER, params={"symbol": "BTCUSDT"}).json()["lastPrice"]
    for interval in KLINE_MS:
        assert klines(client, symbol="BTCUSDT", interval=interval, limit=2)[-1][4] == last
    for symbol in ("SOLUSDT", "DOGEUSDT", "ETHBTC"):
        price = Decimal(client.get(TICKER, params={"symbol": symbol}).json()["lastPrice"])
        for interval in ("1m", "1h", "1d"):
            rows = klines(client, symbol=symbol, interval=interval, limit=1000)
            assert all(price * Decimal("0.85") < Decimal(row[4]) < price * Decimal("1.15") for row in rows)


def test_klines_honour_start_time_end_time_and_limit(client):
    step = KLINE_MS["1m"]
    current = int(time.time() * 1000) // step * step
    start = current - 100 * step

    def opens(**params) -> list[int]:
        return [row[0] for row in klines(client, symbol="BTCUSDT", interval="1m", **params)]

    assert opens(startTime=start, limit=10) == list(range(start, start + 10 * step, step))
    assert opens(startTime=start + 1, limit=3)[0] == start + step  # the first opening at or after it
    assert opens(startTime=start, endTime=start + 5 * step) == list(range(start, start + 6 * step, step))
    # Without startTime: the newest `limit` opening by endTime.
    assert opens(endTime=start + 5 * step + 59_999, limit=4) == list(
        range(start + 2 * step, start + 6 * step, step)
    )
    # Never past now: from startTime up to the kline in progress, fewer than the default 500.
    up_to_now = opens(startTime=start)
    assert up_to_now[0] == start and up_to_now[-1] <= time.time() * 1000 and len(up_to_now) in (101, 102)
    assert opens(startTime=current + 10 * step) == []
    assert len(opens(startTime=start - 5_000 * step, limit=1000)) == 1000


def test_an_hour_is_exactly_its_minutes(client):
    hour = klines(client, symbol="BTCUSDT", interval="1h", limit=3)[0]  # closed
    minutes = klines(client, symbol="BTCUSDT", interval="1m", startTime=hour[0], endTime=hour[6])
    assert [row[0] for row in minutes] == list(range(hour[0], hour[6], 60_000))
    assert (hour[1], hour[4]) == (minutes[0][1], minutes[-1][4])
    assert Decimal(hour[2]) == max(Decimal(row[2]) for row in minutes)
    assert Decimal(hour[3]) == min(Decimal(row[3]) for row in minutes)
    assert hour[8] == sum(row[8] for row in minutes)
    assert float(hour[5]) == pytest.approx(sum(float(row[5]) for row in minutes), rel=1e-6)


def test_closed_klines_agree_between_requests_and_come_from_the_seed(client):
    def closed(rows: list[list]) -> dict[int, list]:
        now_ms = time.time() * 1000
        return {row[0]: row for row in rows if row[6] < now_ms - 1_000}

    first = closed(klines(client, symbol="ETHUSDT", interval="5m", limit=300))
    time.sleep(0.3)
    again = closed(klines(client, symbol="ETHUSDT", interval="5m", limit=300))
    assert len(first) >= 298 and all(again[t] == row for t, row in first.items() if t in again)
    for seed, same in ((7, True), (8, False)):
        with BinanceSimulator(seed=seed) as other:
            rows = httpx.get(
                other.base_url + KLINES,
                params={"symbol": "ETHUSDT", "interval": "5m", "limit": 300},
                verify=SSL_CONTEXT,
            ).json()
        theirs = closed(rows)
        assert all((theirs[t] == row) == same for t, row in first.items() if t in theirs)


def test_a_jump_moves_the_klines_from_its_minute_on(sim, client):
    sim.set_status("BTCUSDT", "BREAK")  # only the jump moves its price
    read_at = int(time.time() * 1000)
    before = klines(client, symbol="BTCUSDT", interval="1m", limit=10)
    sim.jump("BTCUSDT", 2.0)
    after = klines(client, symbol="BTCUSDT", interval="1m", limit=10)
    last = client.get(TICKER, params={"symbol": "BTCUSDT"}).json()["lastPrice"]
    assert after[-1][4] == last and Decimal(last) > Decimal(before[-1][4]) * Decimal("1.9")
    earlier = {row[0]: row for row in before if row[6] < read_at}  # closed before the jump's minute
    assert earlier and all(row == earlier[row[0]] for row in after if row[0] in earlier)


@pytest.mark.parametrize(
    ("params", "body"),
    [
        ({"symbol": "BTCUSD", "interval": "1m"}, {"code": -1121, "msg": "Invalid symbol."}),
        ({"symbol": "BTCUSDT", "interval": "2m"}, {"code": -1120, "msg": "Invalid interval."}),
        ({"symbol": "BTCUSDT", "interval": "1m", "limit": "1001"}, {"code": -1130, "msg": LIMIT_MSG}),
        ({"symbol": "BTCUSDT", "interval": "1m", "limit": "0"}, {"code": -1130, "msg": LIMIT_MSG}),
        ({"interval": "1m"}, {"code": -1102, "msg": MANDATORY_MSG.format("symbol")}),
        ({"symbol": "BTCUSDT"}, {"code": -1102, "msg": MANDATORY_MSG.format("interval")}),
        (
            {"symbol": "BTCUSDT", "interval": "1m", "startTime": "soon"},
            {
                "code": -1100,
                "msg": "Illegal characters found in parameter 'startTime'; legal range is '^[0-9]{1,20}$'.",
            },
        ),
        (
            {"symbol": "BTCUSDT", "interval": "1m", "startTime": "2000", "endTime": "1000"},
            {"code": -1023, "msg": "Start time is greater than end time."},
        ),
    ],
)
def test_klines_errors(client, params, body):
    response = client.get(KLINES, params=params)
    assert (response.status_code, response.json()) == (400, body)
    if body["code"] == -1121:
        assert response.json() == fixture("error_invalid_symbol.json")


def test_each_klines_request_weighs_2_and_meets_429_then_418():
    with (
        BinanceSimulator(weight_limit=7, ban_seconds=30, weight_window_s=1.0) as simulator,
        httpx.Client(verify=SSL_CONTEXT, base_url=simulator.base_url, timeout=5) as client,
    ):
        wait_for_window_start(1.0, needed_s=1.0)
        params = {"symbol": "BTCUSDT", "interval": "1m", "limit": "5"}
        answers = [client.get(KLINES, params=params) for _ in range(2)]
        answers.append(client.get(KLINES, params={**params, "interval": "7m"}))  # charged though refused
        answers += [client.get(KLINES, params=params) for _ in range(2)]
        assert [a.status_code for a in answers] == [200, 200, 400, 429, 418]
        assert [used(a) for a in answers] == [2, 4, 6, 6, 6]
        assert answers[3].json()["code"] == answers[4].json()["code"] == -1003
        assert [record.weight for record in simulator.requests] == [2, 2, 2, 0, 0]
