"""The prices handler in-process, fed with events/*.json, against a real redis-server and moto."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
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

    def put(tickers: list[Ticker], listed: list[str]) -> None:
        cache.write_tick(
            cache.get_client(get_settings()),
            cache.TickWrite(
                slot=now_ms() // 2000,  # the slot being written, as the fetcher numbers them
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


def test_all_pairs_present_is_200_with_every_contract_field(put_in_cache: Callable[..., None]) -> None:
    btc, eth = make_ticker("BTC/USDT", price=9372.49), make_ticker("ETH/USDT", price=250.5)
    put_in_cache([btc, eth], ["BTC/USDT", "ETH/USDT"])

    response = invoke(load_event("prices_get.json"))

    assert response["statusCode"] == 200
    assert response["headers"]["Cache-Control"] == "public, max-age=1"
    body = json.loads(response["body"])
    assert list(body) == ["BTC/USDT", "ETH/USDT"]
    entry = body["BTC/USDT"]
    assert set(entry) == CONTRACT_FIELDS
    assert entry["price"] == 9372.49 and isinstance(entry["volume"], float)
    assert entry["timestamp"] == btc.timestamp  # the exchange's own time
    assert entry["fetchedAt"] == btc.fetchedAt
    assert (entry["stale"], entry["source"], entry["symbol"]) == (False, "cache", "BTCUSDT")


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

    for event in (load_event("prices_get.json"), load_event("prices_all.json")):
        writes.clear()
        assert invoke(event)["statusCode"] == 200
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
    assert {"200", "206", "400", "503"} <= set(prices["responses"])
    assert prices["parameters"][0]["name"] == "pairs"
    entry = spec["components"]["schemas"]["PriceEntry"]
    assert set(entry["properties"]) == CONTRACT_FIELDS


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
