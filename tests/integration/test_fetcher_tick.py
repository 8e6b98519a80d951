"""A fetcher tick against the exchange simulator over HTTP, a real redis-server and moto."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import boto3
import orjson
import pytest
import redis

from fetcher.deps import Fetcher, build_fetcher
from fetcher.loop import LoopSummary, run_slot
from local_stack.binance_simulator import BinanceSimulator
from market_data import cache, store
from market_data.cache.keys import META_FIELDS
from market_data.clock import now_ms
from market_data.config import Settings, load_settings

TICKER = "/api/v3/ticker/24hr"


def ticker_requests(sim: BinanceSimulator) -> list[Any]:
    return [record for record in sim.requests if record.path == TICKER]


_slots = itertools.count(1)


def tick(container: Fetcher) -> LoopSummary:
    """Run one slot as the loop would; each call is a new slot so its claim is free."""
    summary = LoopSummary()
    run_slot(container, next(_slots), "test-invocation", summary)
    return summary


def stats(container: Fetcher) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in container.deps.redis.hgetall(cache.STATS).items()}


def cached_price(container: Fetcher, pair: str) -> float:
    """The price readers are served for ``pair``."""
    return float(orjson.loads(container.deps.redis.hget(cache.STALE_COPIES, pair))["price"])


def seed(settings: Settings, pairs: list[str]) -> None:
    table = boto3.resource("dynamodb", endpoint_url=settings.dynamodb_endpoint_url).Table(
        settings.market_data_table_name
    )
    store.seed_registry(table, pairs, now_ms=now_ms())


def test_a_tick_writes_tickers_the_listed_pairs_and_stats(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    container = make_container()

    summary = tick(container)

    assert summary.ticks == 1 and summary.failed == 0
    client: redis.Redis = container.deps.redis
    btc = orjson.loads(client.hget(cache.STALE_COPIES, "BTC/USDT"))
    assert btc["symbol"] == "BTCUSDT" and btc["exchange"] == "binance" and btc["price"] > 0
    assert client.pttl(cache.STALE_COPIES) > 24 * 3_600_000  # the long-lived copies
    assert cache.read_prices(client, None).listed == {"BTC/USDT", "ETH/USDT"}
    assert stats(container)["fetchSuccesses"] == "1"
    # One ticker request for both pairs, symbols asked by their exchange names.
    requests = ticker_requests(simulator)
    assert len(requests) == 1
    assert sorted(requests[0].params["symbols"]) == ["BTCUSDT", "ETHUSDT"]


def test_the_registry_is_seeded_from_trading_pairs_only_when_empty(
    make_container: Callable[..., Fetcher],
) -> None:
    container = make_container(TRADING_PAIRS='["SOL/USDT"]')
    seed(container.deps.settings, ["BNB/USDT"])  # an existing registry wins over TRADING_PAIRS

    tick(container)

    assert cache.read_prices(container.deps.redis, None).listed == {"BNB/USDT"}
    assert [entry.pair for entry in store.list_registry(container.deps.table)] == ["BNB/USDT"]


def test_pairs_the_exchange_does_not_list_are_missing_with_a_reason_never_guessed(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    container = make_container(TRADING_PAIRS='["BTC/USDT","BTC/USD","ETH/BTC"]')

    tick(container)

    missing = orjson.loads(stats(container)["missingPairs"])
    assert missing["BTC/USD"] == "suspended: binance does not list BTC/USD"
    assert "BREAK" in missing["ETH/BTC"]
    # the registry says so too (the whitelist record shows the status and why)
    assert {r.pair: r.status for r in store.list_registry(container.deps.table)} == {
        "BTC/USDT": "active", "BTC/USD": "suspended", "ETH/BTC": "suspended",
    }  # fmt: skip
    assert container.deps.redis.hget(cache.STALE_COPIES, "BTC/USD") is None
    asked = {symbol for record in ticker_requests(simulator) for symbol in record.params["symbols"]}
    assert asked == {"BTCUSDT"}  # no BTCUSD guessed, no halted symbol fetched


def test_one_invalid_symbol_does_not_blank_the_rest_of_its_batch(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    container = make_container(TRADING_PAIRS='["BTC/USDT","ETH/USDT","BNB/USDT","SOL/USDT","XRP/USDT"]')
    tick(container)  # exchangeInfo is now cached with SOLUSDT in it
    simulator.remove_symbol("SOLUSDT")  # delisted between two exchangeInfo refreshes
    container.deps.redis.hdel(cache.STALE_COPIES, *("BTC/USDT", "ETH/USDT", "BNB/USDT", "XRP/USDT"))
    simulator.reset_requests()

    tick(container)

    for pair in ("BTC/USDT", "ETH/USDT", "BNB/USDT", "XRP/USDT"):
        assert container.deps.redis.hget(cache.STALE_COPIES, pair) is not None, pair
    missing = orjson.loads(stats(container)["missingPairs"])
    assert "SOLUSDT" in missing["SOL/USDT"]
    assert len(ticker_requests(simulator)) <= 1 + 2 * 3  # bisection stays bounded
    # The next tick re-reads the listing and asks for the remaining symbols in one request.
    simulator.reset_requests()
    tick(container)
    assert len(ticker_requests(simulator)) == 1


def test_invalid_tickers_are_dropped_and_counted_and_the_last_good_value_stays(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    container = make_container()
    tick(container)
    good = container.deps.redis.hget(cache.STALE_COPIES, "BTC/USDT")

    for kind in ("zero", "negative", "nan", "high_below_low"):
        simulator.set_bad_ticker("BTCUSDT", kind)
        tick(container)
        assert container.deps.redis.hget(cache.STALE_COPIES, "BTC/USDT") == good, kind  # not rewritten
        assert (
            container.deps.redis.hget(cache.STALE_COPIES, "ETH/USDT") is not None
        )  # the other pair is unaffected

    assert stats(container)["invalidTickers"] == "4"
    # counted by what was wrong: three bad prices, one high below low (the whole ticker)
    assert (stats(container)["invalid:price"], stats(container)["invalid:ticker"]) == ("3", "1")
    assert "invalid ticker" in orjson.loads(stats(container)["missingPairs"])["BTC/USDT"]


@pytest.mark.parametrize(
    ("kind", "counted_as"),
    [
        ("boolean", "malformed"),  # lastPrice: true, which float() would read as 1.0
        ("above_high", "price"),  # a last price outside the day's own range
        ("future", "timestamp"),  # 30 s ahead: it would look fresh long after the fetcher stopped
        ("out_of_range", "quoteVolume"),  # 1e200: DynamoDB refuses it, and with it the whole batch
    ],
)
def test_odd_values_are_rejected_counted_by_kind_and_never_cost_another_pairs_write(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator, kind: str, counted_as: str
) -> None:
    # Given BTC/USDT's ticker carrying an odd value, and last known good due for every pair
    container = make_container(LAST_KNOWN_GOOD_WRITE_INTERVAL_MS="2000")
    simulator.set_bad_ticker("BTCUSDT", kind)

    summary = tick(container)

    # Then the tick goes on, BTC/USDT is dropped and counted by the field at fault
    assert summary.failed == 0
    assert stats(container)[f"invalid:{counted_as}"] == "1", stats(container)
    assert container.deps.redis.hget(cache.STALE_COPIES, "BTC/USDT") is None
    # and ETH/USDT is served and kept as last known good all the same
    assert container.deps.redis.hget(cache.STALE_COPIES, "ETH/USDT") is not None
    assert set(store.read_last_known_good(container.deps.table, None)) == {"ETH/USDT"}


def test_pairs_are_fetched_in_batches_of_batch_size_with_bounded_concurrency(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    symbols = simulator.add_generated_symbols(45)
    pairs = [f"{symbol[:-4]}/USDT" for symbol in symbols]
    container = make_container(
        TRADING_PAIRS=orjson.dumps(pairs).decode(), MARKET_DATA_MAX_CONCURRENT_BATCHES="2"
    )

    tick(container)

    sizes = sorted(len(record.params["symbols"]) for record in ticker_requests(simulator))
    assert sizes == [5, 20, 20]
    assert all(record.weight == 2 for record in ticker_requests(simulator))
    assert container.deps.redis.hlen(cache.STALE_COPIES) == 45 + len(META_FIELDS)


def test_last_known_good_is_written_at_most_once_per_pair_per_interval(
    make_container: Callable[..., Fetcher], moto_endpoint: str
) -> None:
    container = make_container(LAST_KNOWN_GOOD_WRITE_INTERVAL_MS="60000")
    tick(container)
    first = store.read_last_known_good(container.deps.table, None)
    time.sleep(0.05)

    tick(container)
    tick(container)

    second = store.read_last_known_good(container.deps.table, None)
    assert set(first) == {"BTC/USDT", "ETH/USDT"}
    assert second["BTC/USDT"].fetchedAt == first["BTC/USDT"].fetchedAt  # not rewritten within the interval
    # A new container (no memory) still honours the interval: the write times live in the cache.
    fresh_container = make_container(LAST_KNOWN_GOOD_WRITE_INTERVAL_MS="60000")
    tick(fresh_container)
    assert (
        store.read_last_known_good(container.deps.table, None)["BTC/USDT"].fetchedAt
        == first["BTC/USDT"].fetchedAt
    )


def test_after_429_no_exchange_call_until_retry_after_has_passed(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    container = make_container()
    tick(container)  # warm: exchangeInfo cached
    simulator.set_fault("rate_limit", path=TICKER, count=1, retry_after=2)
    simulator.reset_requests()

    tick(container)  # answered 429 Retry-After: 2
    assert len(simulator.requests) == 1
    ban = orjson.loads(container.deps.redis.get(cache.ban_key("binance")))
    assert ban["status"] == 429

    summary = tick(container)  # inside the window: paused, heartbeat says why, no request
    assert summary.paused == 1
    assert len(simulator.requests) == 1
    assert tick(make_container()).paused == 1  # another invocation (no memory of it) honours it too
    assert len(simulator.requests) == 1
    heartbeat = orjson.loads(container.deps.redis.get(cache.HEARTBEAT))
    assert "429" in heartbeat["pauseReason"]

    time.sleep(2.1)
    tick(container)  # window over: fetching resumes
    assert len(simulator.requests) == 2
    assert simulator.requests[-1].status == 200


def test_no_more_than_max_concurrent_batches_are_in_flight(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    symbols = simulator.add_generated_symbols(100)
    pairs = [f"{symbol[:-4]}/USDT" for symbol in symbols]
    container = make_container(
        TRADING_PAIRS=orjson.dumps(pairs).decode(), MARKET_DATA_MAX_CONCURRENT_BATCHES="2"
    )
    tick(container)  # exchangeInfo cached
    simulator.reset_requests()
    latency_s = 0.3
    simulator.set_fault("latency", path=TICKER, latency_ms=latency_s * 1000)

    tick(container)

    # Each request was in flight during the latency before it was answered (logged at the end).
    spans = [(r.monotonic - latency_s, r.monotonic) for r in ticker_requests(simulator)]
    assert len(spans) == 5
    most_in_flight = max(sum(1 for s, e in spans if s < t <= e) for _, t in spans)
    assert most_in_flight == 2


def test_exchange_info_is_cached_and_refreshed_every_few_minutes(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    container = make_container()

    tick(container)
    tick(container)
    info_calls = [r for r in simulator.requests if r.path == "/api/v3/exchangeInfo"]
    assert len(info_calls) == 1  # weight 20 once, not every tick

    container.state.exchanges["binance"].listing.next_read_at = 0  # the refresh time comes
    tick(container)
    assert len([r for r in simulator.requests if r.path == "/api/v3/exchangeInfo"]) == 2


def test_a_429_on_exchange_info_pauses_without_a_ticker_call(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    container = make_container()
    simulator.set_fault("rate_limit", path="/api/v3/exchangeInfo", count=1, retry_after=30)

    tick(container)
    tick(container)

    assert [r.path for r in simulator.requests] == ["/api/v3/exchangeInfo"]
    assert orjson.loads(container.deps.redis.get(cache.ban_key("binance")))["status"] == 429


def test_a_hung_batch_is_cut_off_by_the_timeout_and_the_others_are_written(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    symbols = simulator.add_generated_symbols(40)
    pairs = [f"{symbol[:-4]}/USDT" for symbol in symbols]
    container = make_container(TRADING_PAIRS=orjson.dumps(pairs).decode(), EXCHANGE_READ_TIMEOUT_S="0.5")
    tick(container)  # exchangeInfo cached
    client = container.deps.redis
    client.hdel(cache.STALE_COPIES, *pairs)
    simulator.set_fault("timeout", path=TICKER, count=1, seconds=5)  # the first batch hangs

    tick(container)

    written = [pair for pair in pairs if client.hget(cache.STALE_COPIES, pair) is not None]
    assert len(written) == 20  # the other batch of 20
    missing = orjson.loads(stats(container)["missingPairs"])
    assert sorted(missing.values()) == ["exchange error: timeout"] * 20
    assert stats(container)["fetchErrors"] == "1"


def test_a_registry_outage_does_not_stop_fresh_prices(
    make_container: Callable[..., Fetcher], moto_endpoint: str
) -> None:
    container = make_container()
    tick(container)
    boto3.client("dynamodb", endpoint_url=moto_endpoint).delete_table(
        TableName=container.deps.settings.market_data_table_name
    )
    container.deps.redis.hdel(cache.STALE_COPIES, "BTC/USDT")

    summary = tick(container)

    assert summary.failed == 0
    assert container.deps.redis.hget(cache.STALE_COPIES, "BTC/USDT") is not None
    boto3.client("dynamodb", endpoint_url=moto_endpoint).create_table(  # for the fixture's clean-up
        TableName=container.deps.settings.market_data_table_name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def test_the_handler_runs_the_schedule_event_within_its_context(fetcher_env: dict[str, str]) -> None:
    import json

    from fetcher import handler
    from local_stack.lambda_context import LocalLambdaContext
    from tests.support import load_event

    cache.reset_client()
    store.reset_table()
    handler._fetcher = None
    from market_data.config import get_settings

    get_settings.cache_clear()
    context = LocalLambdaContext("FetcherFunction", timeout_s=7)

    result = handler.lambda_handler(load_event("fetcher_schedule.json"), context)

    assert result["ticks"] >= 1 and result["failed"] == 0
    assert context.get_remaining_time_in_millis() > 0  # returned before its timeout
    assert (
        json.loads(handler.get_fetcher().deps.redis.get(cache.HEARTBEAT))["invocationId"]
        == context.aws_request_id
    )
    handler._fetcher = None


def test_the_fetcher_slows_down_before_the_weight_limit_instead_of_running_into_429(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an exchange whose weight limit is 30 a minute (exchangeInfo costs 20, a ticker batch 2)
    with BinanceSimulator(seed=3, weight_limit=30) as small:
        monkeypatch.setenv("BINANCE_API_BASE_URL", small.base_url)
        for _attempt in range(2):  # a minute boundary inside the run resets the count: run again
            small.reset_limits()
            cache.reset_client()
            store.reset_table()
            container = build_fetcher(load_settings())
            container.deps.redis.delete(cache.ban_key("binance"))
            started = now_ms()
            paused = [tick(container).paused for _ in range(8)]
            if started // 60_000 == now_ms() // 60_000:
                break

        # Then it paused itself before the limit, and the exchange never answered 429
        assert any(paused)
        assert {record.status for record in small.requests} == {200}
        assert sum(record.weight for record in small.requests) <= 27  # 90 % of the limit
        ban = orjson.loads(container.deps.redis.get(cache.ban_key("binance")))
        assert "weight budget" in ban["reason"]


def test_a_price_jump_is_held_back_until_the_next_tick_confirms_it(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    container = make_container()
    tick(container)
    before = cached_price(container, "BTC/USDT")

    simulator.jump("BTCUSDT", 2.0)  # +100 %, far past MAX_PRICE_JUMP_RATIO (25 %)
    tick(container)
    held = cached_price(container, "BTC/USDT")
    assert held == before  # not served yet
    assert container.deps.redis.hexists(cache.HELD_PRICES, "BTC/USDT")
    assert stats(container)["priceJumpsHeld"] == "1"

    tick(container)  # the next tick sees the same level: confirmed
    confirmed = cached_price(container, "BTC/USDT")
    assert confirmed == pytest.approx(2 * before, rel=0.05)
    assert not container.deps.redis.hexists(cache.HELD_PRICES, "BTC/USDT")


def test_a_one_tick_glitch_never_reaches_users(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    container = make_container()
    tick(container)
    before = cached_price(container, "ETH/USDT")

    simulator.jump("ETHUSDT", 0.3)
    tick(container)  # held
    simulator.jump("ETHUSDT", 1 / 0.3)
    tick(container)  # back near the last good price: accepted, the glitch dropped

    after = cached_price(container, "ETH/USDT")
    assert after == pytest.approx(before, rel=0.05)
    assert not container.deps.redis.hexists(cache.HELD_PRICES, "ETH/USDT")


def test_the_circuit_opens_after_failed_ticks_backs_off_probes_once_and_closes(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    import json

    from local_stack.lambda_context import LocalLambdaContext
    from prices_api.handler import lambda_handler as prices_handler
    from tests.support import load_event

    container = make_container()
    tick(container)
    simulator.set_fault("server_error", path=TICKER, status=503)

    for _ in range(3):  # three failed ticks open it
        tick(container)
    circuit = container.deps.redis.hgetall(cache.circuit_key("binance"))
    assert circuit[b"state"] == b"open"
    simulator.reset_requests()

    summary = tick(container)  # within the backoff: no request at all, a heartbeat that says why
    assert summary.paused == 1 and simulator.requests == []
    health = json.loads(prices_handler(load_event("health_get.json"), LocalLambdaContext("p", 6))["body"])
    assert health["fetcher"]["circuitState"] == "open"
    # the reason counts the failed ticks as the docs do: opened after three
    assert "binance: circuit open: 3 failed ticks in a row" in health["fetcher"]["pauseReason"]

    # A failed probe doubles the backoff (with jitter); a good one closes the circuit
    container.deps.redis.hset(cache.circuit_key("binance"), "retryAt", "0")
    first_wait = int(circuit[b"retryAt"]) - now_ms()
    tick(container)  # the probe: still failing
    assert len(simulator.requests) == 1
    reopened = container.deps.redis.hgetall(cache.circuit_key("binance"))
    assert reopened[b"opens"] == b"2" and int(reopened[b"retryAt"]) - now_ms() > first_wait / 2
    simulator.clear_faults()
    container.deps.redis.hset(cache.circuit_key("binance"), "retryAt", "0")
    tick(container)
    assert container.deps.redis.hgetall(cache.circuit_key("binance"))[b"state"] == b"closed"
    assert container.deps.redis.hget(cache.STALE_COPIES, "BTC/USDT") is not None


def test_a_circuit_closing_is_logged_with_its_exchange_and_how_long_it_was_open(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    from market_data.observability import logger

    container = make_container()
    tick(container)
    simulator.set_fault("server_error", path=TICKER, status=503)
    with caplog.at_level(logging.INFO, logger=logger.name):
        tick(container)
        tick(container)
        before_opening = now_ms()
        tick(container)  # the third failed tick opens it
        time.sleep(1.0)  # out for a while
        simulator.clear_faults()
        container.deps.redis.hset(cache.circuit_key("binance"), "retryAt", "0")
        tick(container)  # the probe succeeds
        closed_by = now_ms()

    # The records' fields: the message, its level, and the keys the line carries
    [opened] = [vars(r) for r in caplog.records if r.getMessage() == "exchange circuit opened"]
    [closed] = [vars(r) for r in caplog.records if r.getMessage() == "exchange circuit closed"]
    assert (opened["levelname"], closed["levelname"]) == ("WARNING", "INFO")
    assert opened["exchange"] == closed["exchange"] == "binance" and "http_5xx" in opened["error"]
    assert closed["failures"] == 3 and closed["failed_probes"] == 0
    assert 1.0 <= closed["open_for_s"] <= (closed_by - before_opening) / 1000 + 0.1
    # Closing is said once: the next good tick says nothing more
    with caplog.at_level(logging.INFO, logger=logger.name):
        caplog.clear()
        tick(container)
    assert not [r for r in caplog.records if "circuit" in r.getMessage()]


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("invalid_json", "bad_body"),
        ("truncated", "bad_body"),
        ("server_error", "http_5xx"),
        ("timeout", "timeout"),
    ],
)
def test_bad_exchange_answers_write_nothing_are_counted_by_kind_and_the_last_good_stays(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator, fault: str, kind: str
) -> None:
    container = make_container(EXCHANGE_READ_TIMEOUT_S="0.5")
    tick(container)
    good = container.deps.redis.hget(cache.STALE_COPIES, "BTC/USDT")
    simulator.set_fault(fault, path=TICKER, count=1, seconds=3)

    tick(container)

    assert (
        container.deps.redis.hget(cache.STALE_COPIES, "BTC/USDT") == good
    )  # nothing new: the last good is served
    assert stats(container)[f"errors:{kind}"] == "1"
    assert orjson.loads(stats(container)["missingPairs"])["BTC/USDT"] == f"exchange error: {kind}"


def test_a_partial_answer_serves_what_came_and_names_what_did_not(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    container = make_container()
    tick(container)
    container.deps.redis.hdel(cache.STALE_COPIES, "BTC/USDT", "ETH/USDT")
    simulator.set_fault("partial", path=TICKER, count=1)  # the answer lacks ETHUSDT

    tick(container)

    assert container.deps.redis.hget(cache.STALE_COPIES, "BTC/USDT") is not None
    assert container.deps.redis.hget(cache.STALE_COPIES, "ETH/USDT") is None
    assert orjson.loads(stats(container)["missingPairs"])["ETH/USDT"] == "absent from the exchange's answer"
