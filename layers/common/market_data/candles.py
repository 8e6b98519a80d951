"""Candles: what a pair's served prices did over an interval, built from what the fetcher already
fetches (no exchange request per client), and the gaps where nothing was served.

A 1-minute candle gathers every tick's served price of that minute (``source: samples``), or is
an exchange's own candle (``source: exchange``, backfilled). Longer intervals are rolled up from
the 1-minute ones; an interval without any is a gap, never invented. Volume is only ever the
exchange's own for the interval: a candle built from samples has none (``null``), and neither has
a roll-up unless every minute of it carries one.

Stored 1-minute candles are the API's JSON, byte for byte, so a read of a day of them is a join,
not a parse and an encode per candle; ``time`` comes first so that it is read without parsing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
INTERVALS_MS = {"1m": MINUTE_MS, "5m": 5 * MINUTE_MS, "15m": 15 * MINUTE_MS, "1h": HOUR_MS}
MINUTE_RETENTION_MS = 24 * HOUR_MS  # 1-minute candles, in the cache
HOURLY_RETENTION_MS = 90 * 24 * HOUR_MS  # 1-hour candles, in DynamoDB
SPARKLINE_STEP_MS = 15 * MINUTE_MS
SPARKLINE_POINTS = 96  # 24 h of 15-minute closes
SAMPLES, EXCHANGE = "samples", "exchange"
_TIME_PREFIX = b'{"time":'


@dataclass(frozen=True, slots=True)
class Candle:
    time: int  # the interval's start, ms
    open: float
    high: float
    low: float
    close: float
    volume: float | None  # the exchange's own, for the interval; None when it gave none
    samples: int  # the served prices it gathers (an exchange candle: 0)
    source: str  # samples or exchange
    first_at: int | None = None  # the exchange's time of its first and last sample
    last_at: int | None = None

    def as_api(self) -> dict[str, object]:
        return {
            "time": self.time, "open": self.open, "high": self.high, "low": self.low, "close": self.close,
            "volume": self.volume, "samples": self.samples, "source": self.source,
            "firstAt": self.first_at, "lastAt": self.last_at,
        }  # fmt: skip

    def encode(self) -> bytes:
        return orjson.dumps(self.as_api())


def decode(raw: bytes) -> Candle:
    value = orjson.loads(raw)
    return Candle(
        int(value["time"]), float(value["open"]), float(value["high"]), float(value["low"]),
        float(value["close"]), None if value["volume"] is None else float(value["volume"]),
        int(value["samples"]), str(value["source"]), value.get("firstAt"), value.get("lastAt"),
    )  # fmt: skip


def time_of(raw: bytes) -> int:
    """A stored candle's time, read from its first field without parsing the rest."""
    if not raw.startswith(_TIME_PREFIX):
        return decode(raw).time
    end = raw.index(b",", len(_TIME_PREFIX))
    return int(raw[len(_TIME_PREFIX) : end])


def bucket(time_ms: int, interval_ms: int) -> int:
    return time_ms - time_ms % interval_ms


def roll_up(minutes: Sequence[Candle], interval_ms: int) -> list[Candle]:
    """Longer candles from 1-minute ones (oldest first): one per interval that holds any."""
    rolled: list[Candle] = []
    group: list[Candle] = []
    for candle in minutes:
        if group and bucket(candle.time, interval_ms) != bucket(group[0].time, interval_ms):
            rolled.append(_merged(group, interval_ms))
            group = []
        group.append(candle)
    if group:
        rolled.append(_merged(group, interval_ms))
    return rolled


def _merged(group: Sequence[Candle], interval_ms: int) -> Candle:
    whole = len(group) == interval_ms // MINUTE_MS  # a minute missing: the exchange's volume is not whole
    volumes = [c.volume for c in group]
    volume = sum(v for v in volumes if v is not None) if whole and None not in volumes else None
    firsts = [c.first_at for c in group if c.first_at is not None]
    lasts = [c.last_at for c in group if c.last_at is not None]
    return Candle(
        bucket(group[0].time, interval_ms), group[0].open, max(c.high for c in group),
        min(c.low for c in group), group[-1].close, volume, sum(c.samples for c in group),
        EXCHANGE if all(c.source == EXCHANGE for c in group) else SAMPLES,
        min(firsts) if firsts else None, max(lasts) if lasts else None,
    )  # fmt: skip


def stored_times(stored: Sequence[bytes], interval_ms: int) -> Sequence[int]:
    """The times of stored candles (oldest first, one per interval): a ``range`` when they follow
    one another without a gap, found from the first and the last alone (a day of minutes is
    1,440 of them: parsing each cost more than the read)."""
    if not stored:
        return []
    first, last = time_of(stored[0]), time_of(stored[-1])
    if (last - first) // interval_ms + 1 == len(stored):
        return range(first, last + interval_ms, interval_ms)
    return [time_of(raw) for raw in stored]


def gaps(times: Iterable[int], interval_ms: int, start: int, end: int) -> list[list[int]]:
    """``[from, to)`` ranges of the intervals from ``start``'s to ``end`` (exclusive, both on
    interval boundaries) that hold no candle (``times``: the candles' times, oldest first),
    adjacent ones merged."""
    found: list[list[int]] = []
    expected = bucket(start, interval_ms)
    if isinstance(times, range) and times.step == interval_ms and times:
        # Without a gap inside: only before the first and after the last.
        inside = range(max(times.start, expected), min(times.stop, end), interval_ms)
        if not inside:
            return [[expected, end]] if expected < end else []
        before = [[expected, inside.start]] if expected < inside.start else []
        after = [[inside.stop, end]] if inside.stop < end else []
        return before + after
    for time in times:
        if time < expected:
            continue
        if time >= end:
            break
        if time > expected:
            found.append([expected, time])
        expected = time + interval_ms
    if expected < end:
        found.append([expected, end])
    return found


def sparkline(first: int, closes: Sequence[str], now_ms: int, price: float) -> list[float | None]:
    """24 h of 15-minute closes ending with ``price`` in the interval now open (``closes``: from the
    interval starting at ``first`` on, "" where one had none); an interval without a close is None,
    so every point keeps its place in time."""
    last = bucket(now_ms, SPARKLINE_STEP_MS)
    offset = (first - (last - (SPARKLINE_POINTS - 1) * SPARKLINE_STEP_MS)) // SPARKLINE_STEP_MS
    line: list[float | None] = [None] * SPARKLINE_POINTS
    for index in range(max(0, -offset), min(len(closes), SPARKLINE_POINTS - offset)):
        if closes[index]:
            line[offset + index] = float(closes[index])
    line[-1] = price
    return line
