"""The prices handler in-process, fed with events/*.json, against a real redis-server and moto."""

from __future__ import annotations

import base64
import copy
import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import orjson
import pytest
import redis

from local_stack.lambda_context import LocalLambdaContext
from local_stack.servers import RedisServer
from market_data import cache, store
from market_data.clock import now_ms
from market_data.config import get_settings
from market_data.contracts import TickStats
from market_data.models import Ticker
from prices_api.handler import lambda_handler
from prices_api.prices import NEVER_SUBMITTED, NOT_LISTED, NOT_LISTED_BY_STATUS
from tests.support import REPO_ROOT, load_event

# The function's code and its layer, as Lambda puts them on the path.
PYTHONPATH = ("functions/prices_api", "layers/common", ".")

CONTRACT_FIELDS = {
    "pair", "price", "volume", "quoteVolume", "timestamp", "fetchedAt", "change24h",
    "high24h", "low24h", "stale", "source", "exchange", "symbol",
}  # fmt: skip


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    return lambda_handler(event, LocalLambdaContext("prices", 6))


def prices_event(pairs: str | None) -> dict[str, Any]:
    event = copy.deepcopy(load_event("prices_get.json"))
    if pairs is None:
        event.pop("queryStringParameters", None)
        event["rawQueryString"] = ""
    else:
        event["queryStringParameters"] = {"pairs": pairs}
        event["rawQueryString"] = f"pairs={pairs}"
    return event


def make_ticker(pair: str, *, age_ms: int = 0, price: float = 100.0) -> Ticker:
    at = now_ms() - age_ms
    base, quote = pair.split("/")
    return Ticker(
        pair=pair, price=price, volume=10.0, quoteVolume=1000.0, timestamp=at, fetchedAt=at + 40,
        change24h=-1.25, high24h=price * 1.1, low24h=price * 0.9, exchange="binance", symbol=base + quote,
    )  # fmt: skip


@pytest.fixture
def put_in_cache(service_env: dict[str, str]) -> Callable[..., None]:
    """Write tickers through the fetcher's own write path (cache.write_tick)."""

    def put(tickers: list[Ticker], listed: list[str], slot: int | None = None) -> None:
        cache.write_tick(
            cache.get_client(get_settings()),
            cache.TickWrite(
                # the slot being written, as the fetcher numbers them (2 s slots here)
                slot=now_ms() // 2000 if slot is None else slot,
                tickers={t.pair: orjson.dumps(t.model_dump()) for t in tickers},
                listed=listed,
                unlisted_copies=[],
                stats=TickStats(),
            ),
        )

    return put


@pytest.mark.usefixtures("service_env")
def test_a_cold_cache_answers_503_with_retry_after_never_500() -> None:
    response = invoke(load_event("prices_get.json"))

    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "2"  # one FETCH_INTERVAL_MS of this test env
    body = json.loads(response["body"])
    assert body["error"] and body["message"]
    assert body["unavailablePairs"] == ["BTC/USDT", "ETH/USDT"]


@pytest.mark.usefixtures("service_env")
def test_a_cold_cache_with_sparklines_asked_for_is_the_same_503_and_no_cache_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    event = prices_event("BTC/USDT,ETH/USDT")
    event["queryStringParameters"]["include"] = "sparkline"

    response = invoke(event)

    assert response["statusCode"] == 503 and response["headers"]["Retry-After"] == "2"
    assert json.loads(response["body"])["unavailablePairs"] == ["BTC/USDT", "ETH/USDT"]
    assert "sparklines unavailable" not in caplog.text  # nothing asked of the cache for none


def test_all_pairs_present_is_200_with_every_contract_field(put_in_cache: Callable[..., None]) -> None:
    btc, eth = make_ticker("BTC/USDT", price=9372.49), make_ticker("ETH/USDT", price=250.5)
    put_in_cache([btc, eth], ["BTC/USDT", "ETH/USDT"])

    response = invoke(load_event("prices_get.json"))

    assert response["statusCode"] == 200
    # Kept no longer than the slot it belongs to (2 s slots here).
    max_age = int(response["headers"]["Cache-Control"].removeprefix("public, max-age="))
    assert 0 <= max_age < 2 and response["headers"]["Vary"] == "Accept-Encoding"
    body = json.loads(response["body"])
    assert list(body) == ["BTC/USDT", "ETH/USDT"]
    entry = body["BTC/USDT"]
    assert set(entry) == CONTRACT_FIELDS
    assert entry["price"] == 9372.49 and isinstance(entry["volume"], float)
    assert entry["timestamp"] == btc.timestamp  # the exchange's own time
    assert entry["fetchedAt"] == btc.fetchedAt
    assert (entry["stale"], entry["source"], entry["symbol"]) == (False, "cache", "BTCUSDT")


def test_no_cache_may_keep_an_answer_past_the_next_slots_tick(put_in_cache: Callable[..., None]) -> None:
    def max_age() -> int:
        response = invoke(load_event("prices_get.json"))
        assert response["statusCode"] == 200
        return int(response["headers"]["Cache-Control"].removeprefix("public, max-age="))

    while now_ms() % 2000 > 400:  # a slot with more than 1.6 s left
        time.sleep(0.05)
    tickers = [make_ticker("BTC/USDT"), make_ticker("ETH/USDT")]
    # This slot's tick has not written yet: what the last one wrote is replaced any moment.
    put_in_cache(tickers, ["BTC/USDT", "ETH/USDT"], slot=now_ms() // 2000 - 1)
    assert max_age() == 0
    # Once it has: until the slot ends, in whole seconds.
    put_in_cache(tickers, ["BTC/USDT", "ETH/USDT"])
    assert max_age() == 1


def test_some_pairs_missing_is_206_naming_them(put_in_cache: Callable[..., None]) -> None:
    put_in_cache([make_ticker("BTC/USDT")], ["BTC/USDT", "ETH/USDT"])

    response = invoke(prices_event("BTC/USDT,ETH/USDT,SOL/USDT"))

    assert response["statusCode"] == 206
    assert response["headers"]["X-Missing-Pairs"] == "ETH/USDT,SOL/USDT"
    assert list(json.loads(response["body"])) == ["BTC/USDT"]


@pytest.mark.usefixtures("service_env")
@pytest.mark.parametrize(
    ("pairs", "named"),
    [
        ("BTC/USDT,BTCUSDT", "'BTCUSDT'"),
        (",,", "no pair"),
        ("", "no pair"),  # pairs= with nothing: refused, not read as "every pair"
        (",".join(f"C{i}/USDT" for i in range(101)), "101"),
    ],
)
def test_malformed_or_oversize_pairs_is_400_naming_the_bad_value(pairs: str, named: str) -> None:
    response = invoke(prices_event(pairs))

    assert response["statusCode"] == 400
    body = json.loads(response["body"])
    assert set(body) == {"error", "message"}
    assert named in body["message"]


def test_the_bad_pairs_sample_event_is_a_400(service_env: dict[str, str]) -> None:
    response = invoke(load_event("prices_bad_pairs.json"))
    assert response["statusCode"] == 400
    assert "BTCUSDT" in json.loads(response["body"])["message"]


def test_duplicates_collapse_lower_case_is_normalised_empty_entries_ignored(
    put_in_cache: Callable[..., None],
) -> None:
    put_in_cache([make_ticker("BTC/USDT"), make_ticker("ETH/USDT")], ["BTC/USDT", "ETH/USDT"])

    response = invoke(prices_event("btc/usdt,,BTC/USDT, ,eth/usdt"))

    assert response["statusCode"] == 200
    assert list(json.loads(response["body"])) == ["BTC/USDT", "ETH/USDT"]


def test_pairs_left_out_means_every_listed_pair(put_in_cache: Callable[..., None]) -> None:
    put_in_cache([make_ticker("ETH/USDT"), make_ticker("BTC/USDT")], ["BTC/USDT", "ETH/USDT"])

    response = invoke(load_event("prices_all.json"))

    assert response["statusCode"] == 200
    assert sorted(json.loads(response["body"])) == ["BTC/USDT", "ETH/USDT"]


def test_stale_follows_age_and_past_the_cache_ttl_an_entry_is_last_known_good(
    put_in_cache: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    put_in_cache(
        [make_ticker("BTC/USDT", age_ms=6_000), make_ticker("ETH/USDT", age_ms=1_000)],
        ["BTC/USDT", "ETH/USDT"],
    )

    body = json.loads(invoke(load_event("prices_get.json"))["body"])

    assert body["BTC/USDT"]["stale"] is True  # 6 s > MARKET_DATA_CACHE_STALE_TTL_MS (5 s)
    assert body["BTC/USDT"]["source"] == "cache"  # within MARKET_DATA_CACHE_TTL_MS (15 s)
    assert (body["ETH/USDT"]["stale"], body["ETH/USDT"]["source"]) == (False, "cache")

    # An entry the fetcher has not refreshed for longer than the cache TTL is the last known good.
    put_in_cache([make_ticker("BTC/USDT", age_ms=16_000)], ["BTC/USDT", "ETH/USDT"])
    body = json.loads(invoke(load_event("prices_get.json"))["body"])
    assert (body["BTC/USDT"]["stale"], body["BTC/USDT"]["source"]) == (True, "last_known_good")
    assert body["ETH/USDT"]["source"] == "cache"

    # The setting decides where that line is.
    monkeypatch.setenv("MARKET_DATA_CACHE_TTL_MS", "20000")
    get_settings.cache_clear()
    body = json.loads(invoke(load_event("prices_get.json"))["body"])
    assert (body["BTC/USDT"]["stale"], body["BTC/USDT"]["source"]) == (True, "cache")


def test_a_pair_no_longer_listed_counts_as_missing_even_with_a_copy_cached(
    put_in_cache: Callable[..., None],
) -> None:
    put_in_cache([make_ticker("BTC/USDT"), make_ticker("ETH/USDT")], ["BTC/USDT"])  # ETH revoked

    response = invoke(load_event("prices_get.json"))

    assert response["statusCode"] == 206
    assert response["headers"]["X-Missing-Pairs"] == "ETH/USDT"


def test_one_cache_round_trip_per_request(
    put_in_cache: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    put_in_cache([make_ticker("BTC/USDT"), make_ticker("ETH/USDT")], ["BTC/USDT", "ETH/USDT"])
    invoke(load_event("prices_get.json"))  # connection made
    writes: list[int] = []
    original = redis.connection.Connection.send_packed_command

    def counting(self: redis.connection.Connection, command: Any, check_health: bool = True) -> None:
        writes.append(1)
        original(self, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)

    # The answers that name pairs that are not listed come from the same one read.
    for event, status in (
        (load_event("prices_get.json"), 200),
        (load_event("prices_all.json"), 200),
        (prices_event("BTC/USDT,FOO/USDT"), 206),
        (load_event("prices_not_listed.json"), 404),
    ):
        writes.clear()
        assert invoke(event)["statusCode"] == status
        assert len(writes) == 1


def test_cache_loss_falls_back_to_last_known_good_flagged_stale(
    service_env: dict[str, str], redis_server: RedisServer
) -> None:
    # Given last known good in DynamoDB (written by the fetcher's own store code) and a lost cache
    table = boto3.resource("dynamodb", endpoint_url=service_env["DYNAMODB_ENDPOINT_URL"]).Table(
        service_env["MARKET_DATA_TABLE_NAME"]
    )
    store.seed_registry(table, ["BTC/USDT", "ETH/USDT"], now_ms=now_ms())
    store.write_last_known_good(table, [make_ticker("BTC/USDT", age_ms=30_000, price=9000.5)])
    redis_server.stop()

    response = invoke(load_event("prices_get.json"))

    assert response["statusCode"] == 206
    assert response["headers"]["X-Missing-Pairs"] == "ETH/USDT"
    btc = json.loads(response["body"])["BTC/USDT"]
    assert (btc["source"], btc["stale"], btc["price"]) == ("last_known_good", True, 9000.5)
    assert set(btc) == CONTRACT_FIELDS


@pytest.mark.parametrize("first_read", ["before the loss", "during the loss"])
def test_reads_come_back_from_the_cache_when_it_returns_without_a_restart(
    put_in_cache: Callable[..., None], redis_server: RedisServer, first_read: str
) -> None:
    # Price reads go through one connection per container, built on first use: a connection the
    # loss broke, or one that could not be built during it, is made again once the cache is back.
    put_in_cache([make_ticker("BTC/USDT"), make_ticker("ETH/USDT")], ["BTC/USDT", "ETH/USDT"])
    if first_read == "before the loss":
        assert invoke(load_event("prices_get.json"))["statusCode"] == 200
    redis_server.stop()
    assert invoke(load_event("prices_get.json"))["statusCode"] == 503  # nothing in DynamoDB

    redis_server.start()
    put_in_cache([make_ticker("BTC/USDT"), make_ticker("ETH/USDT")], ["BTC/USDT", "ETH/USDT"])
    response = invoke(load_event("prices_get.json"))
    assert response["statusCode"] == 200
    assert {entry["source"] for entry in json.loads(response["body"]).values()} == {"cache"}


def test_parallel_reads_in_one_container_each_get_their_own_answer(put_in_cache: Callable[..., None]) -> None:
    # Threads share the container's one read connection (the local stack serves requests so): each
    # request gets the pairs it asked for, none another's.
    pairs = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"]
    put_in_cache([make_ticker(pair, price=100.0 + i) for i, pair in enumerate(pairs)], pairs)

    def read(pair: str) -> tuple[str, dict[str, Any]]:
        response = invoke(prices_event(pair))
        assert response["statusCode"] == 200
        return pair, json.loads(response["body"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(read, pairs * 25))
    assert all(list(body) == [pair] for pair, body in answers)
    assert {pair: body[pair]["price"] for pair, body in answers} == {
        p: 100.0 + i for i, p in enumerate(pairs)
    }


def test_cache_loss_with_nothing_stored_is_503_not_500(
    service_env: dict[str, str], redis_server: RedisServer
) -> None:
    redis_server.stop()

    response = invoke(load_event("prices_get.json"))

    assert response["statusCode"] == 503
    assert json.loads(response["body"])["unavailablePairs"] == ["BTC/USDT", "ETH/USDT"]


def test_openapi_is_generated_from_the_code_and_describes_the_contract(service_env: dict[str, str]) -> None:
    response = invoke(load_event("openapi_get.json"))

    assert response["statusCode"] == 200
    spec = json.loads(response["body"])
    assert spec["openapi"].startswith("3.")
    assert {"/api/market-data/prices", "/api/market-data/health", "/api/market-data/init"} <= set(
        spec["paths"]
    )
    prices = spec["paths"]["/api/market-data/prices"]["get"]
    assert {"200", "206", "400", "404", "503"} <= set(prices["responses"])
    assert "X-Not-Listed-Pairs" in prices["responses"]["206"]["headers"]
    assert "400" in spec["paths"]["/api/market-data/health"]["get"]["responses"]
    # Each reason the function gives for a pair that is not listed is one the description names.
    reasons = spec["components"]["schemas"]["NotListedBody"]["properties"]["notListed"][
        "additionalProperties"
    ]
    assert set(reasons["enum"]) == {NOT_LISTED, NEVER_SUBMITTED, *NOT_LISTED_BY_STATUS.values()}
    assert [p["name"] for p in prices["parameters"]] == ["pairs", "include", "If-None-Match"]
    assert "ETag" in prices["responses"]["200"]["headers"] and "304" in prices["responses"]
    entry = spec["components"]["schemas"]["PriceEntry"]
    assert set(entry["properties"]) == CONTRACT_FIELDS | {"sparkline"}  # only with include=sparkline
    assert "sparkline" not in entry["required"]
    history = spec["paths"]["/api/market-data/history"]["get"]
    assert [p["name"] for p in history["parameters"]] == ["pair", "interval", "from", "to", "limit"]
    assert {"200", "400", "404", "503"} <= set(history["responses"])
    candle = spec["components"]["schemas"]["CandleEntry"]["properties"]
    assert {"time", "open", "high", "low", "close", "volume", "samples", "source"} <= set(candle)


def test_a_reachable_but_empty_cache_serves_last_known_good(service_env: dict[str, str]) -> None:
    # Given last known good in DynamoDB and a cache that was flushed (or failed over, empty)
    table = boto3.resource("dynamodb", endpoint_url=service_env["DYNAMODB_ENDPOINT_URL"]).Table(
        service_env["MARKET_DATA_TABLE_NAME"]
    )
    store.seed_registry(table, ["BTC/USDT", "ETH/USDT"], now_ms=now_ms())
    store.write_last_known_good(table, [make_ticker("BTC/USDT"), make_ticker("ETH/USDT")])
    cache.get_client(get_settings()).flushall()

    response = invoke(load_event("prices_get.json"))

    assert response["statusCode"] == 200
    assert {entry["source"] for entry in json.loads(response["body"]).values()} == {"last_known_good"}


READ_PATH_PROBE = """
import json, sys
from local_stack.lambda_context import LocalLambdaContext
from prices_api.handler import lambda_handler
from prices_api.prices import NEVER_SUBMITTED, NOT_LISTED, NOT_LISTED_BY_STATUS
from tests.support import load_event

HEAVY = ("boto3", "pydantic", "aws_lambda_powertools.event_handler")
answers = []
for event in ("prices_get.json", "health_get.json"):
    status = lambda_handler(load_event(event), LocalLambdaContext("prices", 6))["statusCode"]
    answers.append({"status": status, "loaded": [name for name in HEAVY if name in sys.modules]})
print(json.dumps(answers))
"""


def test_a_price_read_in_a_fresh_process_loads_neither_boto3_nor_pydantic_nor_the_router(
    put_in_cache: Callable[..., None], service_env: dict[str, str]
) -> None:
    # The cold start of the function that takes nearly every request: these three are most of
    # what a fresh container would import beyond redis (figures in the README's benchmarks).
    put_in_cache([make_ticker("BTC/USDT"), make_ticker("ETH/USDT")], ["BTC/USDT", "ETH/USDT"])
    pythonpath = os.pathsep.join(str(REPO_ROOT / folder) for folder in PYTHONPATH)
    done = subprocess.run(
        [sys.executable, "-c", READ_PATH_PROBE],
        env={**os.environ, **service_env, "PYTHONPATH": pythonpath, "POWERTOOLS_METRICS_NAMESPACE": "Test"},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    price_read, health_read = json.loads(done.stdout.splitlines()[-1])

    assert price_read == {"status": 200, "loaded": []}
    # Health is served by the router, imported on first use: the probe does see imports.
    assert "aws_lambda_powertools.event_handler" in health_read["loaded"]


def test_the_served_description_has_every_route_with_what_the_server_enforces(
    put_in_cache: Callable[..., None],
) -> None:
    import re

    from prices_api.routes import PAIRS_PATTERN

    # Given the API's one description, as the prices function serves it
    event = copy.deepcopy(load_event("openapi_get.json"))
    description = json.loads(invoke(event)["body"])
    paths = description["paths"]

    # Then the whitelist routes are in it, with their body, query and errors
    assert set(paths["/api/market-data/whitelist"]) == {"get", "post"}
    assert {"get", "delete"} <= set(paths["/api/market-data/whitelist/{pair}"])
    assert "post" in paths["/api/market-data/whitelist/{pair}/approve"]
    submit = paths["/api/market-data/whitelist"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"]["required"] == ["pair"]
    assert {"415", "429"} <= set(submit["responses"])
    listed = {parameter["name"] for parameter in paths["/api/market-data/whitelist"]["get"]["parameters"]}
    assert listed == {"status", "limit", "cursor"}

    # and the pairs parameter admits what the server takes, and refuses what it refuses
    put_in_cache([make_ticker("BTC/USDT")], ["BTC/USDT"])
    parameter = paths["/api/market-data/prices"]["get"]["parameters"][0]
    assert parameter["schema"]["pattern"] == PAIRS_PATTERN
    for value in [
        "",
        ",",
        " , ",
        "BTC",
        "BTC/",
        "/USDT",
        "BTC-USDT",
        "BTC/USDT",
        "btc/usdt, ,ETH/USDT",
        " BTC/USDT ,",
    ]:
        status = invoke(prices_event(value))["statusCode"]
        assert (status != 400) == bool(re.fullmatch(PAIRS_PATTERN, value)), (value, status)


def test_pairs_that_are_not_listed_are_a_404_naming_each_without_retry_after(
    put_in_cache: Callable[..., None],
) -> None:
    # ETH/USDT was listed once (its copy is still cached) and is no longer; FOO/USDT never was.
    put_in_cache([make_ticker("BTC/USDT"), make_ticker("ETH/USDT")], ["BTC/USDT"])

    response = invoke(prices_event("foo/usdt,ETH/USDT"))

    assert response["statusCode"] == 404
    assert "Retry-After" not in response["headers"]
    body = json.loads(response["body"])
    assert body["error"] == "pairs_not_listed"
    assert body["notListed"] == {"FOO/USDT": "not listed", "ETH/USDT": "not listed"}
    assert "FOO/USDT" in body["message"] and "ETH/USDT" in body["message"]
    assert "/api/market-data/whitelist/FOO-USDT" in body["message"]  # where to see why

    sample = invoke(load_event("prices_not_listed.json"))
    assert (sample["statusCode"], json.loads(sample["body"])["notListed"]) == (
        404,
        {"FOO/USDT": "not listed"},
    )


def test_served_with_unlisted_pairs_is_206_naming_the_ones_that_will_never_come(
    put_in_cache: Callable[..., None],
) -> None:
    put_in_cache([make_ticker("BTC/USDT")], ["BTC/USDT", "ETH/USDT"])  # ETH listed, not fetched yet

    response = invoke(prices_event("BTC/USDT,ETH/USDT,FOO/USDT,BAR/USDT"))

    assert response["statusCode"] == 206
    assert response["headers"]["X-Missing-Pairs"] == "ETH/USDT,FOO/USDT,BAR/USDT"
    assert response["headers"]["X-Not-Listed-Pairs"] == "FOO/USDT,BAR/USDT"
    assert list(json.loads(response["body"])) == ["BTC/USDT"]  # still keyed by pair only

    # Every missing pair listed: nothing to give up on, so no such header.
    assert "X-Not-Listed-Pairs" not in invoke(prices_event("BTC/USDT,ETH/USDT"))["headers"]


def test_listed_pairs_not_fetched_yet_stay_503_with_retry_after_naming_the_unlisted_ones(
    put_in_cache: Callable[..., None],
) -> None:
    put_in_cache([], ["BTC/USDT", "ETH/USDT"])  # a warm cache whose pairs have no price yet

    response = invoke(prices_event("ETH/USDT,FOO/USDT"))

    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "2"
    body = json.loads(response["body"])
    assert body["unavailablePairs"] == ["ETH/USDT", "FOO/USDT"]
    assert body["notListed"] == {"FOO/USDT": "not listed"}

    listed_only = json.loads(invoke(prices_event("ETH/USDT"))["body"])
    assert "notListed" not in listed_only


@pytest.mark.usefixtures("service_env")
def test_a_cold_cache_cannot_tell_a_pair_is_not_listed_so_it_answers_503_with_retry_after() -> None:
    # Nothing in the cache, and an unseeded registry: the fetcher's first tick may list any pair.
    response = invoke(load_event("prices_not_listed.json"))

    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "2"
    body = json.loads(response["body"])
    assert body["unavailablePairs"] == ["FOO/USDT"] and "notListed" not in body


def test_with_the_cache_lost_the_registry_says_why_each_pair_is_not_listed(
    service_env: dict[str, str],
) -> None:
    table = boto3.resource("dynamodb", endpoint_url=service_env["DYNAMODB_ENDPOINT_URL"]).Table(
        service_env["MARKET_DATA_TABLE_NAME"]
    )
    at = now_ms()
    store.seed_registry(table, ["BTC/USDT", "ETH/USDT"], now_ms=at)
    store.change_status(
        table, "ETH/USDT", to="revoked", reason="by an admin", now_ms=at, allowed_from=["active"]
    )
    for pair in ("SOL/USDT", "XRP/USDT"):
        store.create_submission(
            table, pair, source="203.0.113.7", now_ms=at, max_pending=10, max_per_source=10
        )
    store.change_status(
        table, "XRP/USDT", to="rejected", reason="illiquid", now_ms=at, allowed_from=["pending"]
    )
    cache.get_client(get_settings()).flushall()

    response = invoke(prices_event("ETH/USDT,SOL/USDT,XRP/USDT,FOO/USDT"))

    assert response["statusCode"] == 404
    assert "Retry-After" not in response["headers"]
    assert json.loads(response["body"])["notListed"] == {
        "ETH/USDT": "revoked",
        "SOL/USDT": "pending verification",
        "XRP/USDT": "rejected",
        "FOO/USDT": "never submitted",
    }
    # A listed pair with nothing kept yet is still one to wait for.
    mixed = invoke(prices_event("BTC/USDT,ETH/USDT"))
    assert mixed["statusCode"] == 503 and mixed["headers"]["Retry-After"] == "2"
    assert json.loads(mixed["body"])["notListed"] == {"ETH/USDT": "revoked"}


def test_every_listed_pair_while_none_is_listed_is_an_empty_200_not_a_retry(
    put_in_cache: Callable[..., None],
) -> None:
    put_in_cache([], [])  # the fetcher ran: every pair of the registry is revoked, rejected or pending

    response = invoke(load_event("prices_all.json"))

    assert (response["statusCode"], json.loads(response["body"])) == (200, {})
    assert "Retry-After" not in response["headers"]


def test_a_misspelt_parameter_is_a_400_naming_it_not_every_pair(put_in_cache: Callable[..., None]) -> None:
    put_in_cache([make_ticker("BTC/USDT"), make_ticker("ETH/USDT")], ["BTC/USDT", "ETH/USDT"])

    response = invoke(load_event("prices_unknown_parameter.json"))  # ?pair=BTC/USDT

    assert response["statusCode"] == 400
    body = json.loads(response["body"])
    assert set(body) == {"error", "message"} and body["error"] == "unknown_parameters"
    assert "'pair'" in body["message"] and "takes only include, pairs" in body["message"]

    # With the right one beside it too, and every unknown one named.
    event = prices_event("BTC/USDT")
    event["queryStringParameters"] |= {"limit": "5", "Pairs": "ETH/USDT"}
    message = json.loads(invoke(event)["body"])["message"]
    assert "parameters 'Pairs', 'limit'" in message


@pytest.mark.usefixtures("service_env")
@pytest.mark.parametrize("name", ["prices_all.json", "health_get.json", "init_get.json", "openapi_get.json"])
def test_every_get_route_refuses_a_query_parameter_it_does_not_take(name: str) -> None:
    event = copy.deepcopy(load_event(name))
    event["queryStringParameters"] = {"verbose": "1"}
    event["rawQueryString"] = "verbose=1"

    response = invoke(event)

    assert response["statusCode"] == 400
    body = json.loads(response["body"])
    assert body["error"] == "unknown_parameters"
    assert "'verbose'" in body["message"] and event["rawPath"] in body["message"]


def test_a_trailing_comma_is_ignored(put_in_cache: Callable[..., None]) -> None:
    put_in_cache([make_ticker("BTC/USDT")], ["BTC/USDT"])

    response = invoke(prices_event("BTC/USDT,"))

    assert (response["statusCode"], list(json.loads(response["body"]))) == (200, ["BTC/USDT"])


def test_the_etag_changes_when_a_price_turns_stale_though_no_tick_came(
    put_in_cache: Callable[..., None],
) -> None:
    stale_after = get_settings().market_data_cache_stale_ttl_ms
    put_in_cache([make_ticker("BTC/USDT", age_ms=stale_after - 600)], ["BTC/USDT"])
    event = prices_event("BTC/USDT")
    first = invoke(event)
    assert first["statusCode"] == 200 and json.loads(first["body"])["BTC/USDT"]["stale"] is False
    event["headers"] = {**event["headers"], "if-none-match": first["headers"]["ETag"]}
    assert invoke(event)["statusCode"] == 304  # the same slot, nothing changed
    time.sleep(0.8)  # no new tick, but the price is now older than the stale threshold
    later = invoke(event)
    assert later["statusCode"] == 200 and json.loads(later["body"])["BTC/USDT"]["stale"] is True
    assert later["headers"]["ETag"] != first["headers"]["ETag"]


def test_a_304_has_no_body_and_the_validators_of_the_200(put_in_cache: Callable[..., None]) -> None:
    pairs = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT"]  # over gzip's 1 KB floor
    put_in_cache([make_ticker(pair) for pair in pairs], pairs)
    event = prices_event(",".join(pairs))
    event["headers"] = {**event["headers"], "accept-encoding": "gzip"}
    first = invoke(event)
    assert first["isBase64Encoded"] is True and first["headers"]["Content-Encoding"] == "gzip"
    assert set(json.loads(gzip.decompress(base64.b64decode(first["body"])))) == set(pairs)
    event["headers"]["if-none-match"] = f'W/"00000000", {first["headers"]["ETag"]}'
    again = invoke(event)
    assert (again["statusCode"], again["body"], again["isBase64Encoded"]) == (304, "", False)
    assert again["headers"]["ETag"] == first["headers"]["ETag"]
    assert again["headers"]["Cache-Control"].startswith("public, max-age=")
