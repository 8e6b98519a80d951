"""Exchanges that count requests per second (Coinbase, Kraken): their requests paced across the
threads of a slot and across the invocations that take the slots in turn, and the slow-moving
figures they keep between slots (Coinbase's 24 h stats, Kraken's rolling open).

Both are carried through the cache from one invocation's slot to the next one's, so that a new
container neither bursts past the exchange's rate nor reads again what another has just read.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from fetcher.exchanges.base import Limits, ListingEntry
from market_data.clock import now_ms

# Requests are started at this share of an exchange's documented rate: clocks and the exchange's
# own counting differ, and a 429 costs more than the margin.
RATE_SHARE = 0.8
# A kept figure older than this is not served: it is read again from the exchange first. Both
# kept figures are refreshed well within it (Coinbase's stats every 5 minutes, Kraken's opens hourly).
KEPT_MAX_AGE_MS = 2 * 3_600_000
# A figure "read" further in the future than this is a broken clock, not a figure.
KEPT_MAX_SKEW_MS = 60_000


class Pacer:
    """Start times at least ``1 / per_second`` apart, shared by the threads of one slot, and
    (through ``next_start_ms`` and ``not_before_ms``, kept in the cache) by the invocations that
    take the slots in turn."""

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._gap_s = 1 / per_second
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._next = 0.0

    def wait_turn(self, deadline: float) -> bool:
        """Wait for the next start time; False (and no wait) when that start and its gap would not
        both fit before ``deadline``: the next slot, whichever invocation takes it, may then start
        at once without coming too close to this one's last request."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            if start + self._gap_s > deadline:
                return False
            self._next = start + self._gap_s
        if start > now:
            self._sleep(start - now)
        return True

    def next_start_ms(self) -> int:
        """The next allowed start as epoch ms, for the invocation that takes the next slot."""
        with self._lock:
            return now_ms() + max(round((self._next - self._clock()) * 1000), 0)

    def not_before_ms(self, epoch_ms: int) -> None:
        """No start before ``epoch_ms``: another invocation's last request was paced up to then."""
        with self._lock:
            self._next = max(self._next, self._clock() + (epoch_ms - now_ms()) / 1000)


@dataclass
class Kept:
    """A slow-moving figure and when it was read."""

    value: Any
    read_at_ms: int


def share_kept(kept: Mapping[str, Kept], *, since_ms: int) -> dict[str, bytes]:
    """The figures read since ``since_ms`` (this tick), as the cache holds them (key -> JSON): only
    what this invocation read, so an older copy never overwrites another invocation's newer one."""
    return {
        key: orjson.dumps({"value": item.value, "readAt": item.read_at_ms})
        for key, item in kept.items()
        if item.read_at_ms >= since_ms
    }


def merge_kept(
    kept: dict[str, Kept], shared: Mapping[str, bytes], *, now_ms: int, accept: Callable[[Any], bool]
) -> list[str]:
    """Take from the cache the figures another invocation read more recently than this one, and
    drop the ones too old to serve. Returns the cached keys to delete: too old, or not a figure
    this exchange's parser would take (``accept``), so that bad data is read again, not served."""
    unusable = []
    for key, raw in shared.items():
        try:
            item = orjson.loads(raw)
            read_at, value = int(item["readAt"]), item["value"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            unusable.append(key)
            continue
        if not accept(value) or not now_ms - KEPT_MAX_AGE_MS <= read_at <= now_ms + KEPT_MAX_SKEW_MS:
            unusable.append(key)
        elif key not in kept or kept[key].read_at_ms < read_at:
            kept[key] = Kept(value, read_at)
    for key in [key for key, item in kept.items() if now_ms - item.read_at_ms > KEPT_MAX_AGE_MS]:
        del kept[key]  # e.g. a pair that left this exchange: its figure is not kept for ever
    return unusable


@dataclass(frozen=True)
class Carried:
    """What a paced exchange leaves for the invocation that takes the next slot."""

    pace_ms: int | None  # no request before then (None: not asked this tick, so nothing to say)
    kept: dict[str, bytes]  # the figures read this tick


class PacedExchange:
    """The part Coinbase and Kraken share: a request rate instead of a weight, paced across slots,
    a listing read like any other request, and slow figures kept between slots."""

    name: str

    def __init__(self, requests_per_s: float, clock_ms: Callable[[], int]) -> None:
        self.requests_per_s = requests_per_s
        self._clock_ms = clock_ms
        self.pacer = Pacer(requests_per_s)  # the rate is the exchange's, across slots
        self.kept: dict[str, Kept] = {}  # key -> a slow figure and when it was read

    def listing(self) -> dict[str, ListingEntry]:
        self.pacer.wait_turn(math.inf)  # a request like any other against the exchange's rate
        return self._read_listing()

    def _read_listing(self) -> dict[str, ListingEntry]:
        raise NotImplementedError

    def limits(self, now: int) -> Limits:
        return Limits()

    @staticmethod
    def accept_kept(value: Any) -> bool:
        """Whether a kept figure from the cache has the shape this exchange's parser takes."""
        raise NotImplementedError

    def resume(self, pace_ms: int | None, kept: Mapping[str, bytes], *, now_ms: int) -> list[str]:
        """Take over where the last slot's invocation left off; returns cached figures to drop."""
        if pace_ms is not None:
            self.pacer.not_before_ms(pace_ms)
        return merge_kept(self.kept, kept, now_ms=now_ms, accept=self.accept_kept)

    def carried(self, *, since_ms: int, asked: bool) -> Carried:
        """What to leave: the pace only when this tick asked the exchange (it must not undo
        another invocation's), and the figures read this tick."""
        return Carried(
            self.pacer.next_start_ms() if asked else None, share_kept(self.kept, since_ms=since_ms)
        )
