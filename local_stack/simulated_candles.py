"""Candles for the exchange simulators: a market's price history as a pure function of time.

A market's history is cut top-down. A day's open and close come from a seeded path that stays near
the market's starting price, as the simulators' random walks do; the day is split into hours, an hour
into quarters, a quarter into five minutes and those into minutes, each child a bridge from its
parent's open to its parent's close inside its parent's range, one of them reaching its high and one
its low, its volume and trades a share of its parent's. So a closed candle depends on (seed, market,
time) alone: repeated requests agree, and any interval is exactly the candles it is made of. Only the
interval in progress reads the live price: it closes at the ticker's last price, and its range holds
every price the ticker showed in the minute in progress. Stdlib only, as the simulators.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import pairwise

MINUTE_S = 60
DAY_S = 86_400
LEVELS = (DAY_S, 3_600, 900, 300, MINUTE_S)  # the candles a history is cut into, longest first
SPLITS = {DAY_S: 24, 3_600: 4, 900: 3, 300: 5}  # how many candles of the next level make one
PARENTS = {step // n: step for step, n in SPLITS.items()}
# The daily path's log deviation from the starting price: smooth noises of these periods (days) and
# sizes, so days move about 1 % and the history stays within a few per cent of the ticker's walk.
WAVES = ((1, 0.005), (7, 0.007), (40, 0.01))
DAY_WICK = 0.005  # how far a day's high and low reach beyond its open and close (log, one sigma)
BRIDGE_SPREAD = 0.6  # how far children wander from the straight line, as a share of the parent's range
REACH_SLACK = 0.3  # a bridge's excursions stop up to this share short of its parent's high and low
WICK_SIZE = 0.5  # a child's wicks reach up to this share of its parent's range over the root of its siblings
ACTIVITY_SIGMA = 0.25  # day-to-day spread of volume (log)
SHARE_SIGMA = 0.4  # spread of the children's shares of their parent's volume (log)


@dataclass(frozen=True, slots=True)
class Candle:
    start: int  # s since the epoch
    open: float
    high: float
    low: float
    close: float
    volume: float  # in base units
    trades: int

    @property
    def vwap(self) -> float:
        """The typical price, (high + low + close) / 3: a volume-weighted price that lies in [low, high]."""
        return (self.high + self.low + self.close) / 3

    def scaled(self, factor: float) -> Candle:
        return replace(
            self,
            open=self.open * factor,
            high=self.high * factor,
            low=self.low * factor,
            close=self.close * factor,
        )


def merge(start: int, parts: list[Candle]) -> Candle:
    """One candle from consecutive ones, oldest first."""
    return Candle(
        start,
        parts[0].open,
        max(part.high for part in parts),
        min(part.low for part in parts),
        parts[-1].close,
        sum(part.volume for part in parts),
        sum(part.trades for part in parts),
    )


def _allot(total: int, shares: list[float], floor: int) -> list[int]:
    """``total`` split by ``shares``, each at least ``floor``, summing to ``total`` exactly."""
    rest = total - floor * len(shares)
    raw = [rest * share for share in shares]
    counts = [floor + int(part) for part in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: raw[i] - int(raw[i]), reverse=True)
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


class CandleSeries:
    """One market's candles: ``candle(start, interval, now)`` for any interval made of whole minutes
    and aligned to it (the exchanges align theirs to the epoch).

    ``key`` names the market and the seed (the same key, the same history); ``price`` is the ticker's
    starting price, which the history stays near; ``daily_volume`` and ``daily_trades`` its typical day.
    """

    def __init__(self, key: str, price: float, daily_volume: float, daily_trades: int) -> None:
        self.key, self.price, self.daily_volume = key, price, daily_volume
        self.daily_trades = max(daily_trades, DAY_S // MINUTE_S)  # a trade a minute at least: none empty
        self._shifts: list[tuple[int, float]] = []  # (minute, factor): a jump, from that minute on
        self._live = (0, price, price, price)  # a minute, the last price seen, its high and low in it
        self._noise = lru_cache(maxsize=4096)(self._noise_at)
        self._level = lru_cache(maxsize=4096)(self._level_at)
        self._day = lru_cache(maxsize=2048)(self._day_at)
        self._split = lru_cache(maxsize=4096)(self._children)

    # --- the live price -----------------------------------------------------------------------------------
    def observe(self, at: float, price: float) -> None:
        """The ticker's price at wall time ``at``: the close of the interval in progress."""
        minute = int(at) // MINUTE_S * MINUTE_S
        seen_in, _, high, low = self._live
        if seen_in != minute:
            high = low = price
        self._live = (minute, price, max(high, price), min(low, price))

    def shift(self, at: float, factor: float) -> None:
        """Prices move by ``factor`` from the minute of ``at`` on (a jump; earlier candles keep theirs)."""
        self._shifts.append((int(at) // MINUTE_S * MINUTE_S, factor))

    # --- candles ----------------------------------------------------------------------------------------
    def candle(self, start: int, interval: int, now: float) -> Candle:
        """The candle of ``interval`` s from ``start``: closed when it ended by ``now``, else in progress
        (its last minute so far closing at the observed price). ``start`` must not be after ``now``."""
        if start > now:
            raise ValueError(f"no candle from {start} yet at {now}")
        end = start + interval
        if end <= now:
            return merge(start, self._closed(start, end))
        minute = int(now) // MINUTE_S * MINUTE_S
        return merge(start, [*self._closed(start, minute), self._minute_in_progress(minute, now)])

    def _minute_in_progress(self, minute: int, now: float) -> Candle:
        planned = self._closed(minute, minute + MINUTE_S)[0]
        seen_in, last, high, low = self._live
        if seen_in != minute:  # nothing seen since the minute began: the last price stands
            high = low = last
        elapsed = max(now - minute, 1.0) / MINUTE_S
        return Candle(
            minute,
            planned.open,
            max(planned.open, high),
            min(planned.open, low),
            last,
            planned.volume * elapsed,
            max(1, round(planned.trades * elapsed)),
        )

    def _closed(self, start: int, end: int) -> list[Candle]:
        """Candles covering ``[start, end)`` (whole minutes), as few as can be: whole days, then hours,
        quarters, five minutes, minutes; none across a jump."""
        cuts = sorted({start, end, *(minute for minute, _ in self._shifts if start < minute < end)})
        parts = []
        for left, right in pairwise(cuts):
            factor = math.prod(f for minute, f in self._shifts if minute <= left)
            at = left
            while at < right:
                step = next(s for s in LEVELS if at % s == 0 and at + s <= right)
                node = self._node(step, at)
                parts.append(node if factor == 1 else node.scaled(factor))
                at += step
        return parts

    def _node(self, step: int, start: int) -> Candle:
        if step == DAY_S:
            return self._day(start // DAY_S)
        parent = PARENTS[step]
        first = start - start % parent
        return self._split(parent, first)[(start - first) // step]

    # --- the history, top-down ----------------------------------------------------------------------------
    def _rng(self, *parts: object) -> random.Random:
        return random.Random("/".join([self.key, *map(str, parts)]))  # a str seed: the same in every process

    def _noise_at(self, period: int, index: int) -> float:
        return self._rng("wave", period, index).gauss(0, 1)

    def _level_at(self, day: int) -> float:
        """The price at the start of ``day`` (days since the epoch)."""
        deviation = 0.0
        for period, size in WAVES:
            index, phase = divmod(day, period)
            here, there = self._noise(period, index), self._noise(period, index + 1)
            deviation += size * (here + (there - here) * (1 - math.cos(math.pi * phase / period)) / 2)
        return self.price * math.exp(deviation)

    def _day_at(self, day: int) -> Candle:
        rng = self._rng("day", day)
        open_, close = self._level(day), self._level(day + 1)
        high = max(open_, close) * math.exp(abs(rng.gauss(0, DAY_WICK)))
        low = min(open_, close) * math.exp(-abs(rng.gauss(0, DAY_WICK)))
        activity = math.exp(rng.gauss(0, ACTIVITY_SIGMA))
        trades = max(round(self.daily_trades * activity), DAY_S // MINUTE_S)
        return Candle(day * DAY_S, open_, high, low, close, self.daily_volume * activity, trades)

    @staticmethod
    def _bridge(parent: Candle, n: int, rng: random.Random) -> list[float]:
        """The ``n + 1`` prices where ``parent``'s children begin and end: a Brownian bridge from its
        open to its close, its excursions stretched towards the parent's high and low (short of them:
        a wick reaches the rest of the way)."""
        walk = [0.0]
        for _ in range(n):
            walk.append(walk[-1] + rng.gauss(0, 1))
        spread = BRIDGE_SPREAD * (parent.high - parent.low) / math.sqrt(n)
        bridge = [
            parent.open + (parent.close - parent.open) * k / n + spread * (walk[k] - walk[n] * k / n)
            for k in range(n + 1)
        ]
        top, bottom = max(parent.open, parent.close), min(parent.open, parent.close)
        peak, trough = max(bridge), min(bridge)
        up = (parent.high - top) / (peak - top) if peak > top else 0.0
        down = (bottom - parent.low) / (bottom - trough) if trough < bottom else 0.0
        up, down = up * (1 - REACH_SLACK * rng.random()), down * (1 - REACH_SLACK * rng.random())

        def stretched(price: float) -> float:
            if price > top:
                return top + (price - top) * up
            if price < bottom:
                return bottom - (bottom - price) * down
            return price

        bounds = [stretched(price) for price in bridge]
        bounds[0], bounds[n] = parent.open, parent.close
        return bounds

    def _children(self, step: int, start: int) -> tuple[Candle, ...]:
        """The candle of ``step`` s from ``start``, split into its ``SPLITS[step]`` children."""
        parent, n = self._node(step, start), SPLITS[step]
        child_step, rng = step // n, self._rng(step, start)
        bounds = self._bridge(parent, n, rng)
        weights = [math.exp(rng.gauss(0, SHARE_SIGMA)) for _ in range(n)]
        shares = [weight / sum(weights) for weight in weights]
        trades = _allot(parent.trades, shares, child_step // MINUTE_S)
        tops = [max(bounds[i], bounds[i + 1]) for i in range(n)]
        bottoms = [min(bounds[i], bounds[i + 1]) for i in range(n)]
        wick = WICK_SIZE * (parent.high - parent.low) / math.sqrt(n)  # ranges grow as the root of time
        highs = [min(parent.high, top + wick * rng.random()) for top in tops]
        lows = [max(parent.low, bottom - wick * rng.random()) for bottom in bottoms]
        # The parent's high and low are reached where the bridge came closest to them.
        highs[tops.index(max(tops))], lows[bottoms.index(min(bottoms))] = parent.high, parent.low
        return tuple(
            Candle(
                start + i * child_step,
                bounds[i],
                highs[i],
                lows[i],
                bounds[i + 1],
                parent.volume * shares[i],
                trades[i],
            )
            for i in range(n)
        )
