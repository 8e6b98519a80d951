"""The same code on a 3-node Redis Cluster, the only mode ElastiCache Serverless speaks."""

from __future__ import annotations

import json

import pytest

from fetcher.deps import build_fetcher
from fetcher.loop import LoopSummary, run_slot
from local_stack.lambda_context import LocalLambdaContext
from market_data import cache, store
from market_data.clock import now_ms
from market_data.config import load_settings
from market_data.contracts import Ban, Heartbeat
from prices_api.handler import lambda_handler
from tests.support import load_event


@pytest.mark.usefixtures("cluster_env")
def test_fetcher_writes_and_the_api_reads_through_a_cluster() -> None:
    store.reset_table()
    container = build_fetcher(load_settings())
    summary = LoopSummary()

    run_slot(container, now_ms() // container.deps.settings.fetch_interval_ms, "cluster-test", summary)

    assert summary.ticks == 1 and summary.failed == 0
    context = LocalLambdaContext("prices", 6)
    prices = lambda_handler(load_event("prices_get.json"), context)
    assert prices["statusCode"] == 200
    assert set(json.loads(prices["body"])) == {"BTC/USDT", "ETH/USDT"}
    assert lambda_handler(load_event("prices_all.json"), context)["statusCode"] == 200
    health = json.loads(lambda_handler(load_event("health_get.json"), context)["body"])
    assert health["status"] == "ok" and health["fetcher"]["isRunning"] is True

    # A second slot is claimed once: the claim works across the cluster client too.
    def claim(owner: str) -> bool:
        heartbeat = Heartbeat(at=1, invocation_id=owner, slot=1)
        opened = cache.open_slot(
            container.deps.redis,
            slot=1,
            owner=owner,
            interval_ms=2000,
            heartbeat=heartbeat,
            exchanges=["binance"],
        )
        return opened.claimed

    assert claim("a") and not claim("b")
    # A ban is only ever lengthened, in one server-side step on the cluster too.
    now = now_ms()
    assert cache.set_ban(container.deps.redis, "binance", Ban(now + 60_000, 418, "banned"), now_ms=now)
    assert not cache.set_ban(container.deps.redis, "binance", Ban(now + 2_000, 429, "shorter"), now_ms=now)


def test_an_unreachable_cluster_is_a_fallback_not_a_500(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from local_stack.servers import free_port
    from market_data.config import get_settings

    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    get_settings.cache_clear()
    cache.reset_client()

    context = LocalLambdaContext("prices", 6)
    prices = lambda_handler(load_event("prices_get.json"), context)
    health = lambda_handler(load_event("health_get.json"), context)

    assert prices["statusCode"] == 503  # nothing stored anywhere yet: unavailable, with a body
    assert json.loads(prices["body"])["unavailablePairs"] == ["BTC/USDT", "ETH/USDT"]
    assert health["statusCode"] == 503  # and no fetcher heartbeat anywhere: down, with the cause
    assert "cache unreachable" in json.loads(health["body"])["reason"]

    # A fetcher that keeps its heartbeat in DynamoDB meanwhile makes it degraded, not down
    store.put_heartbeat(store.get_table(get_settings()), Heartbeat(at=now_ms(), invocation_id="x", slot=1))
    health = lambda_handler(load_event("health_get.json"), context)
    body = json.loads(health["body"])
    assert (health["statusCode"], body["status"], body["fetcher"]["isRunning"]) == (200, "degraded", True)


def test_fetcher_and_api_over_tls(
    fetcher_env: dict[str, str], redis_tls: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from market_data.config import get_settings

    url, ca_file = redis_tls
    monkeypatch.setenv("REDIS_URL", url)  # rediss:// = TLS, as on ElastiCache Serverless
    monkeypatch.setenv("REDIS_TLS_CA_FILE", ca_file)
    get_settings.cache_clear()
    cache.reset_client()
    store.reset_table()
    container = build_fetcher(load_settings())
    container.deps.redis.flushall()
    summary = LoopSummary()

    run_slot(container, now_ms() // container.deps.settings.fetch_interval_ms, "tls-test", summary)

    assert summary.ticks == 1 and summary.failed == 0
    prices = lambda_handler(load_event("prices_get.json"), LocalLambdaContext("prices", 6))
    assert prices["statusCode"] == 200
    assert {entry["source"] for entry in json.loads(prices["body"]).values()} == {"cache"}


def test_a_fetcher_started_while_the_cluster_is_down_coordinates_through_dynamodb_then_uses_it(
    fetcher_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fetcher import handler
    from local_stack.servers import RedisClusterServers
    from market_data.config import get_settings

    # Given a cluster that is not up yet when two fetcher containers start
    cluster = RedisClusterServers()
    monkeypatch.setenv("REDIS_URL", cluster.url)
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    get_settings.cache_clear()
    cache.reset_client()
    store.reset_table()
    handler._fetcher = None
    try:
        # When the scheduled invocation runs on a fresh container
        result = handler.lambda_handler(
            load_event("fetcher_schedule.json"), LocalLambdaContext("FetcherFunction", timeout_s=6)
        )
        first = handler.get_fetcher()
        second = build_fetcher(load_settings())  # another fresh container
        slot = now_ms() // first.deps.settings.fetch_interval_ms + 10
        summaries = [LoopSummary(), LoopSummary()]
        run_slot(first, slot, "first", summaries[0])
        run_slot(second, slot, "second", summaries[1])

        # Then it ticked through DynamoDB instead of failing: heartbeat, claims, last known good
        assert result["ticks"] >= 1 and result["failed"] == 0, result
        heartbeat = store.get_heartbeat(first.deps.table)
        assert heartbeat is not None and heartbeat.invocation_id in {"first", "second"}
        assert [s.ticks for s in summaries] == [1, 0]  # the slot was claimed once between them
        assert set(store.read_last_known_good(first.deps.table, None)) == {"BTC/USDT", "ETH/USDT"}

        # And once the cluster is up, the same container writes to it without a restart
        cluster.start()
        run_slot(first, slot + 1, "first", LoopSummary())
        prices = lambda_handler(load_event("prices_get.json"), LocalLambdaContext("prices", 6))
        assert prices["statusCode"] == 200
        assert {entry["source"] for entry in json.loads(prices["body"]).values()} == {"cache"}
    finally:
        handler._fetcher = None
        cluster.close()
        cache.reset_client()
