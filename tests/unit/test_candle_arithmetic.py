"""Candle arithmetic: roll-ups, volume only where the exchange gave it whole, gaps, sparklines."""

from __future__ import annotations

from market_data.candles import (
    HOUR_MS,
    MINUTE_MS,
    SPARKLINE_POINTS,
    SPARKLINE_STEP_MS,
    Candle,
    decode,
    gaps,
    roll_up,
    sparkline,
    stored_times,
    time_of,
)

T0 = 1_800_000_000_000 - 1_800_000_000_000 % HOUR_MS


def minute(index: int, price: float, *, volume: float | None = None, source: str = "samples") -> Candle:
    return Candle(T0 + index * MINUTE_MS, price, price + 1, price - 1, price + 0.5, volume, 15, source, 1, 2)


def test_five_minutes_roll_up_open_first_close_last_extremes_and_samples_summed() -> None:
    rolled = roll_up([minute(i, 10.0 + i) for i in range(7)], 5 * MINUTE_MS)
    assert [c.time for c in rolled] == [T0, T0 + 5 * MINUTE_MS]
    first = rolled[0]
    assert (first.open, first.close, first.high, first.low) == (10.0, 14.5, 15.0, 9.0)
    assert (first.samples, first.volume, first.source) == (75, None, "samples")


def test_volume_only_when_every_minute_of_the_interval_has_the_exchanges() -> None:
    whole = roll_up([minute(i, 1.0, volume=2.0, source="exchange") for i in range(5)], 5 * MINUTE_MS)
    assert (whole[0].volume, whole[0].source) == (10.0, "exchange")
    one_missing = roll_up([minute(i, 1.0, volume=2.0, source="exchange") for i in range(4)], 5 * MINUTE_MS)
    assert one_missing[0].volume is None
    mixed = [minute(0, 1.0), *(minute(i, 1.0, volume=2.0, source="exchange") for i in range(1, 5))]
    assert (roll_up(mixed, 5 * MINUTE_MS)[0].volume, roll_up(mixed, 5 * MINUTE_MS)[0].source) == (
        None,
        "samples",
    )


def test_gaps_name_every_run_of_empty_intervals_and_nothing_else() -> None:
    times = [T0, T0 + MINUTE_MS, T0 + 4 * MINUTE_MS]
    assert gaps(times, MINUTE_MS, T0, T0 + 6 * MINUTE_MS) == [
        [T0 + 2 * MINUTE_MS, T0 + 4 * MINUTE_MS],
        [T0 + 5 * MINUTE_MS, T0 + 6 * MINUTE_MS],
    ]
    assert gaps(times, MINUTE_MS, T0, T0 + 2 * MINUTE_MS) == []
    assert gaps([], HOUR_MS, T0, T0 + 2 * HOUR_MS) == [[T0, T0 + 2 * HOUR_MS]]


def test_a_stored_candle_is_the_apis_json_and_its_time_reads_without_parsing() -> None:
    candle = minute(3, 97_123.45)
    raw = candle.encode()
    assert decode(raw) == candle and time_of(raw) == candle.time
    assert list(candle.as_api())[:8] == [
        "time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "samples",
        "source",
    ]


def test_a_sparkline_is_96_places_in_time_ending_now_with_none_where_nothing_closed() -> None:
    now = T0 + 5 * HOUR_MS + 7 * MINUTE_MS
    last = now - now % SPARKLINE_STEP_MS
    # Stored from 100 intervals back (the oldest four out of the day now), with holes.
    first = last - 99 * SPARKLINE_STEP_MS
    closes = ["9"] * 4 + ["1.5"] + [""] * 93 + ["2.0", "2.5"]
    line = sparkline(first, closes, now, 3.0)
    assert len(line) == SPARKLINE_POINTS
    assert line[0] == 1.5 and line[-2] == 2.0 and line[-1] == 3.0  # the open interval: the price
    assert sum(point is not None for point in line) == 3
    # Stored only up to an hour ago: the last hour is empty but for the price.
    assert sparkline(first, closes[:-4], now, 3.0)[-5:] == [None, None, None, None, 3.0]
    assert sparkline(0, [], now, 3.0) == [None] * 95 + [3.0]  # nothing stored yet


def test_gaps_are_the_same_whether_times_are_listed_or_known_to_follow_one_another() -> None:
    stored = [minute(i, 1.0).encode() for i in range(3, 9)]
    times = stored_times(stored, MINUTE_MS)
    assert isinstance(times, range) and list(times) == [T0 + i * MINUTE_MS for i in range(3, 9)]
    for start, end in [(0, 12), (3, 9), (5, 7), (0, 2), (10, 12), (4, 12)]:
        window = (T0 + start * MINUTE_MS, T0 + end * MINUTE_MS)
        assert gaps(times, MINUTE_MS, *window) == gaps(list(times), MINUTE_MS, *window)
    holed = stored[:2] + stored[3:]
    assert stored_times(holed, MINUTE_MS) == [time_of(raw) for raw in holed]
