"""Health follows the fetcher's heartbeat; the read path never reaches the exchange."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest

from fetcher.deps import Fetcher, build_fetcher
from fetcher.loop import LoopSummary, run_slot
from local_stack.binance_simulator import BinanceSimulator
from local_stack.lambda_context import LocalLambdaContext
from market_data import cache, store
from market_data.clock import now_ms
from market_data.config import load_settings
from market_data.contracts import TickStats
from market_data.models import Ticker
from prices_api.handler import lambda_handler
from tests.support import REPO_ROOT, load_event

PAIRS = ("BTC/USDT", "ETH/USDT")


def invoke(name: str) -> dict[str, Any]:
    return lambda_handler(load_event(name), LocalLambdaContext("prices", 6))


def one_tick(slots_ahead: int = 0) -> None:
    cache.reset_client()
    store.reset_table()
    container = build_fetcher(load_settings())
    run_slot(
        container,
        now_ms() // container.deps.settings.fetch_interval_ms + slots_ahead,
        "health-test",
        LoopSummary(),
    )


@pytest.mark.usefixtures("fetcher_env")
def test_health_is_ok_after_a_tick_and_init_answers_the_same_body() -> None:
    one_tick()

    health = invoke("health_get.json")
    init = invoke("init_get.json")

    assert health["statusCode"] == 200
    body = json.loads(health["body"])
    assert body["status"] == "ok"
    fetcher = body["fetcher"]
    assert fetcher["isRunning"] is True and fetcher["health"]["isRunning"] is True
    assert set(fetcher["stats"]) == {
        "lastFetchTime", "lastFetchDurationMs", "fetchAttempts", "fetchSuccesses", "fetchErrors", "lastError",
    }  # fmt: skip
    assert fetcher["stats"]["fetchSuccesses"] == 1
    assert fetcher["health"]["fetchSuccessRate"] == 1.0
    assert fetcher["health"]["isCacheStale"] is False
    assert set(json.loads(init["body"])) == set(body)
    assert json.loads(init["body"])["fetcher"]["isRunning"] is True


@pytest.mark.usefixtures("service_env")
def test_no_heartbeat_means_down_with_503() -> None:
    response = invoke("health_get.json")

    assert response["statusCode"] == 503
    body = json.loads(response["body"])
    assert body["status"] == "down" and body["fetcher"]["isRunning"] is False


@pytest.mark.usefixtures("fetcher_env")
def test_a_paused_fetcher_is_running_and_health_says_why(simulator: BinanceSimulator) -> None:
    one_tick()
    simulator.set_fault("rate_limit", path="/api/v3/ticker/24hr", count=1, retry_after=30)
    container = build_fetcher(load_settings())
    slot = now_ms() // container.deps.settings.fetch_interval_ms
    run_slot(container, slot + 1, "health-test", LoopSummary())  # answered 429
    run_slot(container, slot + 2, "health-test", LoopSummary())  # paused: heartbeat only

    body = json.loads(invoke("health_get.json")["body"])

    assert body["status"] == "degraded"
    assert body["fetcher"]["isRunning"] is True
    assert "429" in body["fetcher"]["pauseReason"]
    assert body["fetcher"]["pausedUntil"] > now_ms()
    assert body["fetcher"]["stats"]["fetchErrors"] == 1


@pytest.mark.usefixtures("fetcher_env")
def test_hammering_the_read_api_sends_nothing_to_the_exchange(simulator: BinanceSimulator) -> None:
    one_tick()
    before = len(simulator.requests)

    statuses = {
        invoke(name)["statusCode"]
        for _ in range(100)
        for name in ("prices_get.json", "prices_all.json", "health_get.json")
    }

    assert statuses == {200}
    assert len(simulator.requests) == before


def test_the_read_path_imports_no_boto3_and_no_exchange_client(service_env: dict[str, str]) -> None:
    # Given a warm cache, written by the fetcher's own write path
    ticker = Ticker(
        pair="BTC/USDT", price=1.0, volume=1.0, quoteVolume=1.0, timestamp=now_ms(), fetchedAt=now_ms(),
        change24h=0.0, high24h=1.0, low24h=1.0, exchange="binance", symbol="BTCUSDT",
    )  # fmt: skip
    cache.write_tick(
        cache.get_client(load_settings()),
        cache.TickWrite(
            slot=now_ms() // 2000,  # the slot being written, as the fetcher numbers them
            tickers={p: orjson.dumps(ticker.model_copy(update={"pair": p}).model_dump()) for p in PAIRS},
            listed=list(PAIRS), unlisted_copies=[], stats=TickStats(),
        ),
    )  # fmt: skip
    # A fresh interpreter, as a cold Lambda container. (Powertools imports the bare botocore package
    # to tag its user agent; the costly parts, boto3 and botocore's session and clients, must not load.)
    one_tick_script = textwrap.dedent(
        """
        import json, sys
        from local_stack.lambda_context import LocalLambdaContext
        from prices_api.handler import lambda_handler
        from tests.support import load_event
        response = lambda_handler(load_event("prices_get.json"), LocalLambdaContext("prices", 6))
        print(json.dumps({
            "status": response["statusCode"],
            "loaded": sorted(
                m for m in sys.modules
                if m.split(".")[0] in {"boto3", "httpx", "fetcher"}
                or m in {"botocore.session", "botocore.client"}
            ),
        }))
        """
    )
    paths = ["layers/common", "functions/prices_api", "."]
    env = {
        **service_env,
        "PYTHONPATH": ":".join(str(REPO_ROOT / p) for p in paths),
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    result = subprocess.run(
        [sys.executable, "-c", one_tick_script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["status"] == 200
    assert answer["loaded"] == []


@pytest.mark.usefixtures("fetcher_env")
def test_a_restricted_location_puts_the_fix_in_health_until_it_clears(simulator: BinanceSimulator) -> None:
    simulator.set_fault("restricted")
    one_tick()

    body = json.loads(invoke("health_get.json")["body"])

    assert body["status"] == "degraded"
    assert "451" in body["reason"] and "non-US region" in body["reason"]
    assert "BINANCE_API_BASE_URL" in body["fetcher"]["advice"]

    simulator.clear_faults()
    one_tick(slots_ahead=1)
    body = json.loads(invoke("health_get.json")["body"])
    assert (body["status"], body["fetcher"]["advice"]) == ("ok", None)


def test_health_is_computed_once_per_slot_and_shared_by_every_container(
    make_container: Callable[..., Fetcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    import prices_api.health as health

    # Given a running fetcher, and the health computation counted
    container = make_container()
    run_slot(container, now_ms() // container.deps.settings.fetch_interval_ms, "health-test", LoopSummary())
    computed: list[int] = []
    real = health.compute_health

    def counted(**kwargs: Any) -> Any:
        computed.append(1)
        return real(**kwargs)

    monkeypatch.setattr(health, "compute_health", counted)

    # When many health requests come in one slot, from two containers' worth of clients at once
    def ask(_: int) -> dict[str, Any]:
        return lambda_handler(load_event("health_get.json"), LocalLambdaContext("prices", 6))

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, range(40)))

    # Then it was computed once (or twice, across a slot boundary), and every answer is the same body
    assert {answer["statusCode"] for answer in answers} == {200}
    assert 1 <= len(computed) <= 2
    assert len({answer["body"] for answer in answers}) <= 2


NO_LISTING_READ = "no exchange's listing could be read yet, so no exchange is known to list it"


def test_with_no_exchange_reachable_health_names_each_cause_and_no_pair_is_called_unlisted(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    from market_data.config import get_settings
    from tests.conftest import UNREACHABLE

    # Given a machine that reaches no exchange: a name that never resolves (.invalid, no network
    # needed to fail) and a closed loopback port
    offline = make_container(
        EXCHANGES='["binance","coinbase","kraken"]',
        BINANCE_API_BASE_URL="http://exchange.invalid",
        COINBASE_API_BASE_URL=UNREACHABLE,
        KRAKEN_API_BASE_URL=UNREACHABLE,
    )
    get_settings.cache_clear()
    slot = now_ms() // offline.deps.settings.fetch_interval_ms

    # When the fetcher ticks until every circuit is open, then probes one exchange alone
    for offset in range(3):
        run_slot(offline, slot + offset, "health-test", LoopSummary())
    offline.deps.redis.hset(cache.circuit_key("kraken"), "retryAt", "0")
    summary = LoopSummary()
    run_slot(offline, slot + 3, "health-test", summary)
    assert summary.ticks == 1  # the probe's tick: the other two were not asked

    # Then health says what is wrong and what to do, each exchange's cause named
    body = json.loads(invoke("health_get.json")["body"])
    advice = body["fetcher"]["advice"]
    assert body["status"] == "degraded" and body["reason"] == advice
    assert advice.startswith(
        "no exchange could be reached: binance: name resolution failed (exchange.invalid"
    )
    assert "coinbase: connection refused (127.0.0.1:9)" in advice
    assert "kraken: connection refused (127.0.0.1:9)" in advice
    assert "make demo" in advice
    # and no pair is said to be unlisted: no listing was read at all
    assert body["fetcher"]["missingPairs"] == dict.fromkeys(PAIRS, NO_LISTING_READ)

    # When Binance can be reached again (a container with its address, its backoff over)
    online = make_container(BINANCE_API_BASE_URL=simulator.base_url)
    online.deps.redis.hset(cache.circuit_key("binance"), "retryAt", "0")
    run_slot(online, slot + 4, "health-test", LoopSummary())

    # Then the advice goes, though the two others are still out, and the pairs are served
    body = json.loads(invoke("health_get.json")["body"])
    assert body["fetcher"]["advice"] is None
    assert body["fetcher"]["missingPairs"] == {}
    assert sorted(body["fetcher"]["pairSources"]) == sorted(PAIRS)


def test_on_lambda_the_unreachable_advice_points_at_the_vpcs_route_out(
    make_container: Callable[..., Fetcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    container = make_container(BINANCE_API_BASE_URL="http://exchange.invalid")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "market-data-FetcherFunction")  # as Lambda sets it

    run_slot(container, now_ms() // container.deps.settings.fetch_interval_ms, "health-test", LoopSummary())

    advice = json.loads(invoke("health_get.json")["body"])["fetcher"]["advice"]
    assert advice.startswith(
        "no exchange could be reached: binance: name resolution failed (exchange.invalid"
    )
    assert "NAT gateway" in advice and "make demo" not in advice
