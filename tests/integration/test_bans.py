"""A ban from the exchange holds for every invocation, whatever happens to the cache: driven
through the fetcher by the Binance simulator's 418 and 429 over HTTP, with two containers (two
sets of collaborators) over one real redis-server and moto."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import orjson

from fetcher.deps import Fetcher
from fetcher.loop import LoopSummary, run_slot
from fetcher.slot import open_slot
from fetcher.tick import run_tick
from local_stack.binance_simulator import BinanceSimulator
from market_data import cache, store
from market_data.clock import now_ms

TICKER = "/api/v3/ticker/24hr"
_slots = itertools.count(90_000)


def tick(container: Fetcher) -> LoopSummary:
    summary = LoopSummary()
    run_slot(container, next(_slots), "ban-test", summary)
    assert summary.failed == 0
    return summary


def ticker_requests(simulator: BinanceSimulator) -> int:
    return sum(1 for record in simulator.requests if record.path == TICKER)


def cached_ban(container: Fetcher) -> dict[str, object]:
    return orjson.loads(container.deps.redis.get(cache.ban_key("binance")))  # type: ignore[no-any-return]


def banned_for_two_minutes(make_container: Callable[..., Fetcher], simulator: BinanceSimulator) -> Fetcher:
    """A container whose ticker request got an IP ban (418, Retry-After 120 s)."""
    container = make_container()
    tick(container)
    simulator.set_fault("ban", path=TICKER, count=1, retry_after=120)
    tick(container)
    return container


def test_a_418_pauses_every_container_for_its_whole_retry_after(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    # Given a container that gets an IP ban (418, Retry-After 120 s) for its ticker request
    first = banned_for_two_minutes(make_container, simulator)
    ban = cached_ban(first)
    assert ban["status"] == 418 and int(ban["until"]) >= now_ms() + 110_000  # type: ignore[call-overload]

    # When a new container (no memory of it) takes the next slots
    simulator.reset_requests()
    second = make_container()
    summaries = [tick(second), tick(first)]

    # Then nobody asks the exchange: zero requests while the ban lasts
    assert [summary.paused for summary in summaries] == [1, 1]
    assert simulator.requests == []


def test_a_shorter_429_that_was_in_flight_never_shortens_a_418_ban(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    # Given two containers; the second opens its slot (no ban yet) before the first is banned
    first, second = make_container(), make_container()
    tick(first)
    tick(second)
    opened = open_slot(second, next(_slots), "ban-test-second", now_ms())
    simulator.set_fault("ban", path=TICKER, count=1, retry_after=120)
    tick(first)  # 418: banned for 120 s
    simulator.set_fault("rate_limit", path=TICKER, count=1, retry_after=2)

    # When the second's request, already on its way, comes back 429 with a 2 s window
    run_tick(second, opened, deadline=time.monotonic() + 2)

    # Then the ban stays the 418's, in the cache and in DynamoDB
    ban = cached_ban(first)
    assert ban["status"] == 418 and int(ban["until"]) >= now_ms() + 100_000  # type: ignore[call-overload]
    durable = store.get_bans(first.deps.table, ["binance"])["binance"]
    assert durable.status == 418 and durable.until >= now_ms() + 100_000
    # and a third container, after the 429's window, still makes no request
    time.sleep(2.2)
    simulator.reset_requests()
    assert tick(make_container()).paused == 1
    assert simulator.requests == []


def test_after_a_cache_flush_a_new_container_still_honours_the_ban(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    # Given a 418 with Retry-After 120 s, kept in the cache and in DynamoDB
    first = banned_for_two_minutes(make_container, simulator)

    # When the cache is flushed (reachable, but empty) and a new container takes the slots
    first.deps.redis.flushall()
    simulator.reset_requests()
    fresh = make_container()
    summaries = [tick(fresh), tick(fresh)]

    # Then it makes zero requests at the exchange, and the ban is back in the cache for everyone
    assert [summary.paused for summary in summaries] == [1, 1]
    assert simulator.requests == []
    assert cached_ban(fresh)["status"] == 418
