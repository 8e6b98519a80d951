"""Candles from the ticks' served prices, against real parts: the fetcher ticking real slots on the
Binance simulator into a real redis-server, its candle consumer, and moto for the hourly items."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from fetcher.candles import CandleRecorder
from fetcher.deps import Fetcher
from fetcher.loop import LoopSummary, run_slot
from fetcher.tick import WrittenTick
from market_data import cache, store
from market_data.cache.keys import OPEN_CANDLES, SPARKLINES, minute_candles_key
from market_data.candles import HOUR_MS, HOURLY_RETENTION_MS, MINUTE_MS, decode, gaps
from market_data.config import get_settings
from market_data.models import Ticker

INTERVAL_MS = 2000  # the tests' slots: 30 a minute
PER_MINUTE = MINUTE_MS // INTERVAL_MS


def minute_start_slot(minutes_ago: int = 10) -> int:
    """The first slot of a minute a little in the past (real times: the exchange's are real too)."""
    now = int(time.time() * 1000)
    return (now - now % MINUTE_MS - minutes_ago * MINUTE_MS) // INTERVAL_MS


class Served:
    """A consumer that keeps what each tick wrote, to compare the candles with."""

    def __init__(self) -> None:
        self.ticks: list[WrittenTick] = []

    def __call__(self, written: WrittenTick) -> None:
        self.ticks.append(written)


def stored(pair: str) -> list[Any]:
    client = cache.get_client(get_settings())
    return [decode(raw) for raw in client.zrange(minute_candles_key(pair), 0, -1)]


def test_a_minute_candle_gathers_every_served_price_of_its_minute(
    make_container: Callable[..., Fetcher],
) -> None:
    container = make_container()
    served = Served()
    container.deps.consumers.append(served)
    first = minute_start_slot()
    for slot in range(first, first + PER_MINUTE + 2):  # a whole minute, and two slots of the next
        run_slot(container, slot, "candles", LoopSummary())

    [candle] = stored("BTC/USDT")
    prices = [tick.tickers["BTC/USDT"] for tick in served.ticks[:PER_MINUTE]]
    assert candle.time == first * INTERVAL_MS
    assert (candle.open, candle.close) == (prices[0].price, prices[-1].price)
    assert (candle.high, candle.low) == (max(p.price for p in prices), min(p.price for p in prices))
    assert (candle.samples, candle.source, candle.volume) == (PER_MINUTE, "samples", None)
    assert (candle.first_at, candle.last_at) == (prices[0].timestamp, prices[-1].timestamp)
    # The next minute is open: its two samples so far, not yet among the closed candles.
    found = cache.read_minutes(cache.get_client(get_settings()), ["BTC/USDT"], 0, 2**62)
    assert found["BTC/USDT"][1] is not None and found["BTC/USDT"][1].samples == 2
    container.close()


def test_a_minute_without_a_tick_is_a_gap_and_a_short_one_has_fewer_samples(
    make_container: Callable[..., Fetcher],
) -> None:
    container = make_container()
    first = minute_start_slot()
    slots = [
        *range(first, first + PER_MINUTE),
        *range(first + 2 * PER_MINUTE + 5, first + 3 * PER_MINUTE + 1),
    ]
    for slot in slots:
        run_slot(container, slot, "candles", LoopSummary())

    candles = stored("ETH/USDT")
    start = first * INTERVAL_MS
    assert [c.time for c in candles] == [start, start + 2 * MINUTE_MS]
    assert [c.samples for c in candles] == [PER_MINUTE, PER_MINUTE - 5]
    assert gaps([c.time for c in candles], MINUTE_MS, start, start + 3 * MINUTE_MS) == [
        [start + MINUTE_MS, start + 2 * MINUTE_MS]
    ]
    container.close()


def test_two_containers_taking_turns_build_the_same_candle_and_a_late_tick_adds_nothing(
    make_container: Callable[..., Fetcher],
) -> None:
    one, other = make_container(), make_container()
    first = minute_start_slot()
    for slot in range(first, first + PER_MINUTE - 2):
        run_slot(one if slot % 2 else other, slot, f"candles-{slot % 2}", LoopSummary())
    # The minute's last two slots: the later one first, then the earlier one arrives late. Its
    # prices are refused (a newer slot's are written), so it is no sample either.
    run_slot(one, first + PER_MINUTE - 1, "candles-1", LoopSummary())
    run_slot(other, first + PER_MINUTE - 2, "candles-0", LoopSummary())
    run_slot(one, first + PER_MINUTE, "candles-1", LoopSummary())

    [candle] = stored("BTC/USDT")
    assert candle.samples == PER_MINUTE - 1
    one.close()
    other.close()


def ticker(pair: str, price: float, at: int) -> Ticker:
    return Ticker(
        pair=pair, price=price, volume=1.0, quoteVolume=price, timestamp=at, fetchedAt=at, change24h=0.0,
        high24h=price * 2, low24h=price / 2, exchange="binance", symbol=pair.replace("/", ""),
    )  # fmt: skip


def tick(slot: int, prices: dict[str, float]) -> WrittenTick:
    at = slot * INTERVAL_MS
    tickers = {pair: ticker(pair, price, at - 100) for pair, price in prices.items()}
    return WrittenTick(slot, tickers, sorted(prices), {}, cache_written=True)


def write_slot(slot: int) -> None:
    """What the tick's own write does first: the slot's prices are the newest written."""
    from market_data.cache.keys import WRITTEN_SLOT

    cache.get_client(get_settings()).set(WRITTEN_SLOT, slot)


@pytest.fixture
def hour_start() -> int:
    now = int(time.time() * 1000)
    return now - now % HOUR_MS - 3 * HOUR_MS


def feed(recorder: CandleRecorder, slots: range, price_of: Callable[[int], dict[str, float]]) -> None:
    for slot in slots:
        write_slot(slot)
        recorder(tick(slot, price_of(slot)))


def test_an_hour_rolls_up_into_one_item_per_pair_once_with_its_ttl(
    service_env: dict[str, str], hour_start: int
) -> None:
    settings = get_settings()
    recorders = [
        CandleRecorder(settings, cache.get_client(settings), store.get_table(settings), owner=name)
        for name in ("one", "two")
    ]
    first = hour_start // INTERVAL_MS
    # Every slot of the hour's first and last ten minutes (the middle missed), prices rising.
    price_of: Callable[[int], dict[str, float]] = lambda slot: {  # noqa: E731
        "BTC/USDT": 100.0 + (slot - first),
        "ETH/USDT": 10.0,
    }
    feed(recorders[0], range(first, first + 10 * PER_MINUTE), price_of)
    feed(recorders[1], range(first + 50 * PER_MINUTE, first + 60 * PER_MINUTE), price_of)
    # Into the next hour: each container's next tick past its first minute hands the hour over.
    after = first + 60 * PER_MINUTE + PER_MINUTE
    for recorder in recorders:
        write_slot(after)
        recorder(tick(after, price_of(after)))
        recorder.flush(10)

    table = store.get_table(settings)
    items = table.query(
        KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": "CANDLE#1h#BTC/USDT"}
    )["Items"]
    [hour] = [item for item in items if int(item["sk"]) == hour_start]
    assert float(hour["open"]) == 100.0 and float(hour["close"]) == 100.0 + 60 * PER_MINUTE - 1
    assert float(hour["low"]) == 100.0 and float(hour["high"]) == 100.0 + 60 * PER_MINUTE - 1
    assert int(hour["samples"]) == 20 * PER_MINUTE and "volume" not in hour  # no exchange volume
    assert int(hour["expiresAt"]) == (hour_start + HOURLY_RETENTION_MS) // 1000  # DynamoDB's TTL, 90 days
    # One write per pair per hour: the second container found the hour claimed.
    assert recorders[1].roll_up_hour(hour_start, ["BTC/USDT"]) == 0
    assert (
        store.read_hourly_candles(table, "ETH/USDT", hour_start, hour_start + HOUR_MS)[0].samples
        == 20 * PER_MINUTE
    )
    for recorder in recorders:
        recorder.close()


def test_a_failed_hourly_write_is_retried_by_the_next_tick(
    service_env: dict[str, str], hour_start: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = get_settings()
    recorder = CandleRecorder(settings, cache.get_client(settings), store.get_table(settings), owner="one")
    first = hour_start // INTERVAL_MS
    feed(recorder, range(first, first + 3), lambda slot: {"BTC/USDT": 5.0})
    after = first + 60 * PER_MINUTE + PER_MINUTE
    failing = store.StoreUnavailableError(ConnectionError("dynamodb unreachable"))

    def unreachable(*args: object) -> int:
        raise failing

    monkeypatch.setattr(store, "write_hourly_candles", unreachable)
    write_slot(after)
    recorder(tick(after, {"BTC/USDT": 5.0}))
    recorder.flush(10)
    table = store.get_table(settings)
    assert store.read_hourly_candles(table, "BTC/USDT", hour_start, hour_start + HOUR_MS) == []
    monkeypatch.undo()
    write_slot(after + 1)
    recorder(tick(after + 1, {"BTC/USDT": 5.0}))
    recorder.flush(10)
    [candle] = store.read_hourly_candles(table, "BTC/USDT", hour_start, hour_start + HOUR_MS)
    assert candle.samples == 3
    recorder.close()


def test_candles_live_a_day_and_older_ones_are_trimmed(service_env: dict[str, str]) -> None:
    settings = get_settings()
    client = cache.get_client(settings)
    recorder = CandleRecorder(settings, client, store.get_table(settings), owner="one")
    now = int(time.time() * 1000)
    old = (now - now % MINUTE_MS - 25 * HOUR_MS) // INTERVAL_MS  # a minute more than a day ago
    feed(recorder, range(old, old + 2), lambda slot: {"BTC/USDT": 1.0})
    feed(recorder, range(old + PER_MINUTE, old + PER_MINUTE + 1), lambda slot: {"BTC/USDT": 1.0})
    assert [c.time for c in stored("BTC/USDT")] == [old * INTERVAL_MS]
    recent = (now - now % MINUTE_MS - 2 * MINUTE_MS) // INTERVAL_MS
    feed(recorder, range(recent, recent + PER_MINUTE + 1), lambda slot: {"BTC/USDT": 2.0})
    assert [c.time for c in stored("BTC/USDT")] == [recent * INTERVAL_MS]  # the day-old one is gone
    day = 24 * HOUR_MS
    for key in (minute_candles_key("BTC/USDT"), OPEN_CANDLES, SPARKLINES):
        assert day < client.pttl(key) <= day + HOUR_MS
    recorder.close()
