"""Overlapping invocations and deadlines: each wall-clock slot is fetched exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import orjson
import pytest

from fetcher.deps import Fetcher, build_fetcher
from fetcher.loop import LoopSummary, first_slot, run_fetcher, run_slot
from local_stack.binance_simulator import BinanceSimulator
from market_data import cache, store
from market_data.clock import now_ms
from market_data.config import load_settings
from tests.integration.test_metrics_contract import emf_documents

INTERVAL_MS = 2000


@pytest.mark.usefixtures("fetcher_env")
def test_two_overlapping_invocations_fetch_each_slot_once_between_them(
    simulator: BinanceSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two containers (separate clients, separate memory) against one Redis
    containers = []
    for _ in range(2):
        cache.reset_client()
        store.reset_table()
        containers.append(build_fetcher(load_settings()))
    summaries: list[LoopSummary] = []

    def invoke(index: int) -> None:
        container = containers[index]
        summaries.append(
            run_fetcher(
                container, invocation_id=f"invocation-{index}", remaining_ms=lambda: 60_000, run_seconds=7.0
            )
        )

    # When the first starts just after a slot boundary, the second half a slot later, and both
    # tick for ~7 s
    time.sleep((INTERVAL_MS - now_ms() % INTERVAL_MS + 50) / 1000)
    started = now_ms()
    first = threading.Thread(target=invoke, args=(0,))
    second = threading.Thread(target=invoke, args=(1,))
    first.start()
    time.sleep(INTERVAL_MS / 2000)
    second.start()
    first.join(30)
    second.join(30)

    # Then, by the fetcher's own slot numbers (its metrics documents, one per slot and invocation),
    # every slot from the first on was fetched by exactly one of them, without error
    documents = emf_documents(capsys.readouterr().out)
    ticked = Counter(d["slot"] for d in documents if d.get("outcome") == "ticked")
    assert all("errorKinds" not in d for d in documents), documents
    assert len(ticked) >= 3 and set(ticked.values()) == {1}, ticked
    assert sorted(ticked) == list(range(started // INTERVAL_MS, started // INTERVAL_MS + len(ticked)))
    # and the exchange saw one ticker request per slot fetched (two pairs: one batch), no more
    tickers = [record for record in simulator.requests if record.path == "/api/v3/ticker/24hr"]
    assert len(tickers) == len(ticked)
    assert sum(s.ticks for s in summaries) == len(ticked)
    assert sum(s.skipped_claimed_elsewhere for s in summaries) >= 2  # both ran, one skipped
    assert all(s.failed == 0 for s in summaries)


@pytest.mark.usefixtures("fetcher_env")
def test_a_fetcher_near_its_deadline_stops_without_overrunning() -> None:
    container = build_fetcher(load_settings())
    deadline = time.monotonic() + 5.0

    def remaining_ms() -> int:
        return int((deadline - time.monotonic()) * 1000)

    run_fetcher(container, invocation_id="short", remaining_ms=remaining_ms, run_seconds=120)

    assert remaining_ms() > 0  # returned with time to spare, although run_seconds asked for more
    beat = container.deps.redis.get(cache.HEARTBEAT)
    assert beat is not None


def test_a_late_answer_for_an_older_slot_never_replaces_a_newer_slots_prices(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    # Given two containers: the first fetches slot N and its answer is held back 1.5 s
    first, second = make_container(), make_container()
    run_slot(first, 60_000, "warm-first", LoopSummary())  # listings read, registry seeded
    run_slot(second, 60_001, "warm-second", LoopSummary())
    simulator.set_fault("latency", path="/api/v3/ticker/24hr", count=1, latency_ms=1500)
    late = threading.Thread(target=run_slot, args=(first, 60_010, "late", LoopSummary()))
    late.start()
    time.sleep(0.4)  # its request is on its way

    # When the second writes slot N+1 meanwhile, then the first's late answer comes back
    summary = LoopSummary()
    run_slot(second, 60_011, "on-time", summary)
    assert summary.ticks == 1
    newer = second.deps.redis.hget(cache.STALE_COPIES, "BTC/USDT")
    late.join(10)

    # Then readers still see slot N+1's prices
    assert second.deps.redis.hget(cache.STALE_COPIES, "BTC/USDT") == newer


def test_many_pollers_never_add_a_request_one_per_batch_per_slot(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    from local_stack.lambda_context import LocalLambdaContext
    from prices_api.handler import lambda_handler as prices_handler
    from tests.support import load_event

    # Given 45 pairs: three batches of 20 a slot
    symbols = simulator.add_generated_symbols(45)
    pairs = [f"{symbol[:-4]}/USDT" for symbol in symbols]
    container = make_container(TRADING_PAIRS=orjson.dumps(pairs).decode())
    assert (
        run_fetcher(container, invocation_id="warm", remaining_ms=lambda: 60_000, run_seconds=0.1).ticks == 1
    )
    simulator.reset_requests()

    # When twenty pollers read every pair as fast as they can while the fetcher ticks for ~6 s
    stop, statuses = threading.Event(), Counter[int]()
    event = load_event("prices_all.json")

    def poll() -> None:
        while not stop.is_set():
            statuses[prices_handler(event, LocalLambdaContext("prices", 6))["statusCode"]] += 1

    pollers = [threading.Thread(target=poll) for _ in range(20)]
    for poller in pollers:
        poller.start()
    summary = run_fetcher(container, invocation_id="polled", remaining_ms=lambda: 60_000, run_seconds=6.0)
    stop.set()
    for poller in pollers:
        poller.join(10)

    # Then the exchange saw exactly one request per batch per slot fetched, and nothing else
    tickers = [record for record in simulator.requests if record.path == "/api/v3/ticker/24hr"]
    assert summary.ticks >= 3 and summary.failed == 0
    assert len(tickers) == 3 * summary.ticks
    assert sorted({len(record.params["symbols"]) for record in tickers}) == [5, 20]
    assert set(statuses) == {200} and sum(statuses.values()) > 100


def test_a_fresh_container_started_at_the_end_of_a_slot_serves_its_first_tick_in_full(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    # Given a cold container whose listing read takes 400 ms (the exchange is slow to answer it)
    container = make_container()
    simulator.set_fault("latency", latency_ms=400, count=1, path="/api/v3/exchangeInfo")

    # When its invocation starts 150 ms before a slot ends and runs for one tick
    time.sleep(((INTERVAL_MS - 150) - now_ms() % INTERVAL_MS) % INTERVAL_MS / 1000)
    summary = run_fetcher(container, invocation_id="late", remaining_ms=lambda: 60_000, run_seconds=0.1)

    # Then that one tick fetched every pair: it was not spent on a slot the listing read used up
    assert (summary.ticks, summary.failed) == (1, 0)
    served = cache.read_prices(container.deps.redis, ["BTC/USDT", "ETH/USDT"])
    assert set(served.tickers) == {"BTC/USDT", "ETH/USDT"}
    tickers = [record for record in simulator.requests if record.path == "/api/v3/ticker/24hr"]
    assert len(tickers) == 1


def test_a_fresh_container_started_early_in_a_slot_serves_that_slot() -> None:
    # The quarter rule, at the boundaries a fresh container may land on (4 s slots)
    assert first_slot(10 * 4000 + 2999, 4000) == 10  # 1,001 ms left: this slot
    assert first_slot(10 * 4000 + 3000, 4000) == 10  # exactly a quarter left
    assert first_slot(10 * 4000 + 3001, 4000) == 11  # less: the next boundary
