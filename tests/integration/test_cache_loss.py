"""The fetcher with its cache lost: once per slot, bans honoured, last known good kept, recovery."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable

import msgspec
import orjson
import pytest

from fetcher.deps import Fetcher
from fetcher.loop import LoopSummary, run_fetcher, run_slot
from local_stack.binance_simulator import BinanceSimulator
from local_stack.servers import RedisServer
from market_data import cache, store
from market_data.clock import now_ms

INTERVAL_MS = 2000
TICKER = "/api/v3/ticker/24hr"
_slots = itertools.count(50_000)


def tick(container: Fetcher) -> LoopSummary:
    summary = LoopSummary()
    run_slot(container, next(_slots), "cache-loss-test", summary)
    return summary


def test_two_invocations_keep_fetching_once_per_slot_and_writing_last_known_good(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator, redis_server: RedisServer
) -> None:
    # Given two containers, and a cache that goes away
    first, second = make_container(LAST_KNOWN_GOOD_WRITE_INTERVAL_MS="2000"), make_container()
    tick(first)  # registry seeded, listing cached
    redis_server.stop()
    simulator.reset_requests()
    before = store.read_last_known_good(first.deps.table, None)["BTC/USDT"].fetchedAt
    summaries: list[LoopSummary] = []

    def invoke(container: Fetcher, name: str) -> None:
        summaries.append(
            run_fetcher(container, invocation_id=name, remaining_ms=lambda: 60_000, run_seconds=5.0)
        )

    # When both tick for ~5 s, starting just after a slot boundary, half a slot apart
    time.sleep((INTERVAL_MS - now_ms() % INTERVAL_MS + 50) / 1000)
    threads = [threading.Thread(target=invoke, args=(first, "a"))]
    threads[0].start()
    time.sleep(INTERVAL_MS / 2000)
    threads.append(threading.Thread(target=invoke, args=(second, "b")))
    threads[1].start()
    for thread in threads:
        thread.join(30)

    # Then each slot was fetched once between them, claimed through DynamoDB
    slots = Counter(
        (int(r.wall_time * 1000) - INTERVAL_MS // 2) // INTERVAL_MS + 1
        for r in simulator.requests
        if r.path == TICKER
    )
    assert len(slots) >= 2 and set(slots.values()) == {1}, slots
    assert all(s.failed == 0 for s in summaries)
    # and last known good kept being written
    assert store.read_last_known_good(first.deps.table, None)["BTC/USDT"].fetchedAt > before
    # and the heartbeat went to DynamoDB, so health can tell running from dead
    heartbeat = store.get_heartbeat(first.deps.table)
    assert heartbeat is not None and now_ms() - heartbeat.at < 3 * INTERVAL_MS


def test_a_ban_is_honoured_while_the_cache_is_lost_and_recovery_needs_no_restart(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator, redis_server: RedisServer
) -> None:
    container = make_container()
    tick(container)
    redis_server.stop()
    simulator.set_fault("rate_limit", path=TICKER, count=1, retry_after=2)

    tick(container)  # 429: the ban is kept in DynamoDB (the cache is gone) and in memory
    other_container = make_container()  # no memory of it
    summary = tick(other_container)

    assert summary.paused == 1
    assert [r.status for r in simulator.requests if r.path == TICKER] == [200, 429]
    assert store.get_bans(container.deps.table, ["binance"])["binance"].status == 429

    # When the cache comes back, the next tick writes it again, without a restart
    redis_server.start()
    time.sleep(2.1)  # the ban has passed
    container.deps.redis.flushall()
    assert tick(container).ticks == 1
    assert container.deps.redis.hget(cache.STALE_COPIES, "BTC/USDT") is not None


@pytest.fixture(autouse=True)
def _cache_back(redis_server: RedisServer) -> object:
    yield None
    if redis_server.process is None:
        redis_server.start()


def test_dynamodb_failing_keeps_the_cache_fresh_counts_errors_and_never_crash_loops(
    make_container: Callable[..., Fetcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from botocore.config import Config

    from local_stack.servers import free_port

    container = make_container(LAST_KNOWN_GOOD_WRITE_INTERVAL_MS="2000")
    tick(container)  # the registry is read once
    # DynamoDB goes away (errors on every call, after the client's bounded retries)
    dead = f"http://127.0.0.1:{free_port()}"
    config = Config(connect_timeout=0.5, read_timeout=0.5, retries={"max_attempts": 2, "mode": "standard"})
    container.deps.table = boto3.resource("dynamodb", endpoint_url=dead, config=config).Table(
        container.deps.settings.market_data_table_name
    )
    container.deps.redis.hdel(cache.STALE_COPIES, "BTC/USDT")

    summaries = [tick(container) for _ in range(3)]
    time.sleep(2.1)  # last known good is due again
    summaries.append(tick(container))

    assert all(s.failed == 0 and s.ticks == 1 for s in summaries)
    assert container.deps.redis.hget(cache.STALE_COPIES, "BTC/USDT") is not None  # prices stay fresh
    counted = int(container.deps.redis.hget(cache.STATS, "errors:dynamodb") or 0)
    assert counted >= 3  # registry reads (each tick) and the last known good write


def test_dynamodb_throttling_is_retried_within_bounds_and_the_cache_stays_fresh(
    make_container: Callable[..., Fetcher],
) -> None:
    """DynamoDB answering every call with its throttling error, over HTTP as DynamoDB sends it."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from market_data.store import get_table, reset_table

    calls: list[str] = []

    class Throttling(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            calls.append(self.headers.get("X-Amz-Target", ""))
            body = (
                b'{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",'
                b'"message":"The level of configured provisioned throughput for the table was exceeded."}'
            )
            self.send_response(400)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("x-amzn-ErrorType", "ProvisionedThroughputExceededException")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Throttling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        container = make_container(LAST_KNOWN_GOOD_WRITE_INTERVAL_MS="2000")
        tick(container)
        reset_table()
        # The production client (its own timeouts and retry bounds), pointed at the throttling endpoint
        settings = msgspec.structs.replace(
            container.deps.settings, dynamodb_endpoint_url=f"http://127.0.0.1:{server.server_port}"
        )
        container.deps.table = get_table(settings)
        before = orjson.loads(container.deps.redis.hget(cache.STALE_COPIES, "BTC/USDT"))["fetchedAt"]

        summary = tick(container)

        assert summary.failed == 0 and summary.ticks == 1
        assert orjson.loads(container.deps.redis.hget(cache.STALE_COPIES, "BTC/USDT"))["fetchedAt"] > before
        queries = [target for target in calls if target.endswith("Query")]
        assert len(queries) == 2  # retried once: the client's bound of two attempts
        assert int(container.deps.redis.hget(cache.STATS, "errors:dynamodb") or 0) >= 1
    finally:
        server.shutdown()
        server.server_close()
        reset_table()


def test_after_a_flush_a_jump_is_judged_against_last_known_good_and_never_served_fresh(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    # Given prices kept in the cache and in DynamoDB, then a flush (a failover, a new cache)
    container = make_container(LAST_KNOWN_GOOD_WRITE_INTERVAL_MS="2000")
    assert tick(container).ticks == 1
    kept = store.read_last_known_good(container.deps.table, None)["BTC/USDT"].price
    container.deps.redis.flushall()

    # When the exchange's price jumps x100
    simulator.jump("BTCUSDT", 100)
    assert tick(container).ticks == 1

    # Then it is held back and counted, not served, and DynamoDB keeps the last good price
    assert container.deps.redis.hget(cache.STALE_COPIES, "BTC/USDT") is None
    assert container.deps.redis.hget(cache.STALE_COPIES, "ETH/USDT") is not None
    assert container.deps.redis.hget(cache.STATS, "priceJumpsHeld") == b"1"
    assert store.read_last_known_good(container.deps.table, None)["BTC/USDT"].price == kept
    # and the next tick, seeing the same level, confirms it
    assert tick(container).ticks == 1
    assert container.deps.redis.hget(cache.STALE_COPIES, "BTC/USDT") is not None


def test_while_the_cache_is_lost_a_jump_never_reaches_last_known_good(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator, redis_server: RedisServer
) -> None:
    container = make_container(LAST_KNOWN_GOOD_WRITE_INTERVAL_MS="2000")
    assert tick(container).ticks == 1
    kept = store.read_last_known_good(container.deps.table, None)["BTC/USDT"].price
    redis_server.stop()

    simulator.jump("BTCUSDT", 100)
    time.sleep(2.1)  # last known good due again
    assert tick(container).ticks == 1

    lkg = store.read_last_known_good(container.deps.table, None)
    assert lkg["BTC/USDT"].price == kept  # held back, not written
    assert lkg["ETH/USDT"].fetchedAt > 0
    time.sleep(2.1)
    assert tick(container).ticks == 1  # confirmed by the next tick: written
    assert store.read_last_known_good(container.deps.table, None)["BTC/USDT"].price > 50 * kept
