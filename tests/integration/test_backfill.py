"""Backfill against the three exchange simulators over real HTTP (serving candles as the fixtures
document them), a real redis-server and moto: a newly active pair's day of minutes and its hours,
once, within each exchange's pace, and again after a failure."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fetcher.backfill import Backfill
from fetcher.deps import Fetcher
from fetcher.loop import LoopSummary, run_slot
from local_stack.binance_simulator import BinanceSimulator
from local_stack.coinbase_simulator import CoinbaseSimulator
from local_stack.kraken_simulator import KrakenSimulator
from market_data import cache, store
from market_data.cache.keys import minute_candles_key
from market_data.candles import HOUR_MS, HOURLY_RETENTION_MS, MINUTE_MS, decode
from market_data.config import get_settings

INTERVAL_MS = 2000
CANDLE_PATHS = ("/api/v3/klines", "/candles", "/0/public/OHLC")


def backfill_of(container: Fetcher) -> Backfill:
    return next(consumer for consumer in container.deps.consumers if isinstance(consumer, Backfill))


def settle(container: Fetcher, timeout_s: float = 60) -> None:
    """Wait for the pairs handed to the backfill so far."""
    backfill_of(container).worker.submit(lambda: None).result(timeout=timeout_s)


def candle_requests(simulator: Any) -> list[Any]:
    return [r for r in simulator.requests if r.path.endswith(CANDLE_PATHS) and "/ticker" not in r.path]


def is_minutes_request(request: Any) -> bool:
    """A request for 1-minute candles, in each exchange's own words."""
    params = request.params
    if request.path.endswith("/candles"):  # Coinbase: minutes when no granularity is named
        return params.get("granularity", "60") == "60"
    return params.get("interval") in ("1m", "1")  # Binance klines, Kraken OHLC (minutes by default too)


@pytest.fixture
def exchange(
    request: pytest.FixtureRequest, fetcher_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Any]]:
    """One exchange alone, its simulator, and a fetcher that backfills (gaps shortened: pacing has a
    test of its own)."""
    name = request.param
    simulator_class = {"binance": BinanceSimulator, "coinbase": CoinbaseSimulator, "kraken": KrakenSimulator}[
        name
    ]
    with simulator_class(seed=3) as simulator:
        monkeypatch.setenv("EXCHANGES", f'["{name}"]')
        monkeypatch.setenv(f"{name.upper()}_API_BASE_URL", simulator.base_url)
        monkeypatch.setenv("TRADING_PAIRS", '["BTC/USDT"]' if name == "binance" else '["BTC/USD"]')
        monkeypatch.setenv("CANDLE_BACKFILL", "true")
        get_settings.cache_clear()
        yield name, simulator


def container_for(make_container: Callable[..., Fetcher]) -> Fetcher:
    """A container whose backfill asks faster than the real gap, within the simulators' limits."""
    container = make_container()
    for source in backfill_of(container).sources.values():
        source.backfill_gap_s = min(source.backfill_gap_s, max(source.backfill_gap_s / 5, 0.5))  # type: ignore[misc]
    return container


def serve_until_queued(container: Fetcher, first_slot: int, pair: str) -> int:
    """Tick until the pair is served (Kraken reads a new pair's open first) and so handed to the
    backfill; the last slot run."""
    for slot in range(first_slot, first_slot + 10):
        run_slot(container, slot, "backfill", LoopSummary())
        backfill = backfill_of(container)
        if pair in backfill.in_flight or pair in backfill.done:
            return slot
        time.sleep(0.5)  # the exchange's pace holds back-to-back ticks
    raise AssertionError(f"{pair} was never served")


@pytest.mark.parametrize(
    ("exchange", "pair", "minutes_at_least", "hours_at_least"),
    [
        ("binance", "BTC/USDT", 1_430, 2_150),
        ("coinbase", "BTC/USD", 1_430, 2_150),
        ("kraken", "BTC/USD", 710, 710),
    ],
    indirect=["exchange"],
)
def test_a_new_pair_gets_a_day_of_minutes_and_its_hours_from_its_exchange_once(
    exchange: tuple[str, Any],
    make_container: Callable[..., Fetcher],
    pair: str,
    minutes_at_least: int,
    hours_at_least: int,
) -> None:
    _, simulator = exchange
    container = container_for(make_container)
    now = int(time.time() * 1000)
    last = serve_until_queued(container, now // INTERVAL_MS, pair)
    settle(container)

    client = cache.get_client(get_settings())
    minutes = [decode(raw) for raw in client.zrange(minute_candles_key(pair), 0, -1)]
    # Kraken keeps 720 of each interval: 12 hours of minutes, 30 days of hours.
    assert len(minutes) >= minutes_at_least
    assert all(c.source == "exchange" and c.volume is not None and c.samples == 0 for c in minutes)
    # Closed minutes only: none at or past the minute in which the exchange was asked for them.
    asked_at = int(min(r.wall_time for r in candle_requests(simulator) if is_minutes_request(r)) * 1000)
    assert minutes[-1].time < asked_at // MINUTE_MS * MINUTE_MS
    assert now - minutes[0].time <= 24 * HOUR_MS + MINUTE_MS
    hours = store.read_hourly_candles(store.get_table(get_settings()), pair, now - HOURLY_RETENTION_MS, now)
    assert len(hours) >= hours_at_least and all(h.source == "exchange" for h in hours)
    asked = len(candle_requests(simulator))

    # A second container, and later ticks: the pair is not asked for again.
    other = container_for(make_container)
    run_slot(other, last + 1, "backfill-2", LoopSummary())
    run_slot(container, last + 2, "backfill", LoopSummary())
    settle(other)
    settle(container)
    assert len(candle_requests(simulator)) == asked
    container.close()
    other.close()


@pytest.mark.parametrize("exchange", ["binance"], indirect=True)
def test_backfill_requests_keep_the_exchanges_pace_and_no_slot_waits_for_them(
    exchange: tuple[str, Any], make_container: Callable[..., Fetcher]
) -> None:
    _, simulator = exchange
    container = make_container()  # the real gap
    gap = backfill_of(container).sources["binance"].backfill_gap_s
    slot = int(time.time() * 1000) // INTERVAL_MS
    run_slot(container, slot, "backfill", LoopSummary())
    slot_returned = time.monotonic()
    settle(container)
    times = [r.monotonic for r in candle_requests(simulator)]
    assert len(times) == 5  # 2 requests of 1,000 minutes, 3 of 1,000 hours
    assert min(b - a for a, b in itertools.pairwise(times)) >= gap * 0.95
    assert slot_returned < times[-1]  # the slot returned while backfill was still asking
    container.close()


@pytest.mark.parametrize("exchange", ["binance"], indirect=True)
def test_a_failed_backfill_is_not_marked_done_and_a_later_tick_does_it(
    exchange: tuple[str, Any], make_container: Callable[..., Fetcher]
) -> None:
    _, simulator = exchange
    container = container_for(make_container)
    simulator.set_fault("server_error", path="/api/v3/klines", count=1)
    slot = int(time.time() * 1000) // INTERVAL_MS
    run_slot(container, slot, "backfill", LoopSummary())
    settle(container)
    client = cache.get_client(get_settings())
    assert cache.backfilled(client, ["BTC/USDT"]) == set()
    assert client.zcard(minute_candles_key("BTC/USDT")) == 0

    run_slot(container, slot + 1, "backfill", LoopSummary())
    settle(container)
    assert cache.backfilled(client, ["BTC/USDT"]) == {"BTC/USDT"}
    assert client.zcard(minute_candles_key("BTC/USDT")) >= 1_430
    container.close()


@pytest.mark.parametrize("exchange", ["binance"], indirect=True)
def test_a_minute_this_service_sampled_keeps_its_own_candle(
    exchange: tuple[str, Any], make_container: Callable[..., Fetcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANDLE_BACKFILL", "false")
    get_settings.cache_clear()
    sampling = make_container()
    start = int(time.time() * 1000) // MINUTE_MS * MINUTE_MS - 3 * MINUTE_MS
    for slot in range(start // INTERVAL_MS, start // INTERVAL_MS + MINUTE_MS // INTERVAL_MS + 1):
        run_slot(sampling, slot, "sampling", LoopSummary())
    monkeypatch.setenv("CANDLE_BACKFILL", "true")
    get_settings.cache_clear()
    container = container_for(make_container)
    run_slot(container, int(time.time() * 1000) // INTERVAL_MS, "backfill", LoopSummary())
    settle(container)
    client = cache.get_client(get_settings())
    by_time = {c.time: c for c in map(decode, client.zrange(minute_candles_key("BTC/USDT"), 0, -1))}
    assert by_time[start].source == "samples" and by_time[start].samples == MINUTE_MS // INTERVAL_MS
    assert by_time[start - MINUTE_MS].source == "exchange"
    assert sum(1 for c in by_time.values() if c.time == start) == 1
    sampling.close()
    container.close()


@pytest.mark.parametrize("exchange", ["binance"], indirect=True)
def test_a_restored_pair_is_backfilled_again_for_the_time_it_was_not_served(
    exchange: tuple[str, Any], make_container: Callable[..., Fetcher]
) -> None:
    from dataclasses import replace

    from fetcher.tick import WrittenTick

    _, simulator = exchange
    container = container_for(make_container)
    served: list[WrittenTick] = []
    container.deps.consumers.append(served.append)
    last = serve_until_queued(container, int(time.time() * 1000) // INTERVAL_MS, "BTC/USDT")
    settle(container)
    asked = len(candle_requests(simulator))
    backfill = backfill_of(container)
    backfill(replace(served[-1], slot=last + 1))  # served again: nothing more to ask
    settle(container)
    assert len(candle_requests(simulator)) == asked
    backfill(replace(served[-1], slot=last + 2, activated=("BTC/USDT",)))  # restored this tick
    settle(container)
    assert len(candle_requests(simulator)) == 2 * asked
    container.close()


@pytest.mark.parametrize("exchange", ["binance"], indirect=True)
def test_an_ending_invocation_asks_nothing_more_and_the_next_tick_resumes(
    exchange: tuple[str, Any], make_container: Callable[..., Fetcher]
) -> None:
    _, simulator = exchange
    container = container_for(make_container)
    backfill = backfill_of(container)
    backfill.flush(1.0)  # the handler returns: Lambda would freeze the container now
    served: list[Any] = []
    container.deps.consumers.insert(0, served.append)
    slot = int(time.time() * 1000) // INTERVAL_MS
    run_slot(container, slot, "backfill", LoopSummary())  # a tick of the next invocation
    settle(container)
    assert len(candle_requests(simulator)) == 5  # resumed: the whole history asked for
    backfill.flush(1.0)
    client = cache.get_client(get_settings())
    client.hdel("{md}:backfilled", "BTC/USDT")
    backfill.worker.submit(backfill.backfill, "BTC/USDT", backfill.sources["binance"], "BTCUSDT").result(10)
    assert len(candle_requests(simulator)) == 5  # nothing asked while stopping
    assert cache.backfilled(client, ["BTC/USDT"]) == set()  # and it is left for a later tick
    container.close()


@pytest.mark.parametrize("exchange", ["binance"], indirect=True)
def test_two_containers_backfilling_share_one_pace(
    exchange: tuple[str, Any], make_container: Callable[..., Fetcher]
) -> None:
    """Overlapping invocations each backfill their own pairs: together they still ask the exchange
    no faster than one would."""
    _, simulator = exchange
    one, other = make_container(), make_container()  # the real gap
    source_one, source_other = backfill_of(one).sources["binance"], backfill_of(other).sources["binance"]
    gap = source_one.backfill_gap_s
    jobs = [
        backfill_of(one).worker.submit(backfill_of(one).backfill, "BTC/USDT", source_one, "BTCUSDT"),
        backfill_of(other).worker.submit(backfill_of(other).backfill, "ETH/USDT", source_other, "ETHUSDT"),
    ]
    assert [job.result(60) for job in jobs] == [True, True]
    times = sorted(r.monotonic for r in candle_requests(simulator))
    assert len(times) == 10
    # The rate one backfill keeps (nine gaps for ten requests), not twice it.
    assert times[-1] - times[0] >= 9 * gap * 0.95
    assert all(times[i + 2] - times[i] >= gap for i in range(len(times) - 2))  # never three in a gap
    one.close()
    other.close()
