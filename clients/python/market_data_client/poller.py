"""Polling: a read every interval, a state after each read and every ``refresh_s`` between them.

The schedule: every ``interval_s`` (4 s, the service's slot) after an answer; after a 503, what its
``Retry-After`` says (plus up to a second of jitter, so the clients a cold start turned away do not
all come back in the same instant); after a failure, a jittered wait that grows up to a minute,
never less than the interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator

from market_data_client.api import normalise_pairs
from market_data_client.async_client import AsyncPricesClient
from market_data_client.backoff import Backoff
from market_data_client.client import PricesClient, now_ms
from market_data_client.errors import MarketDataError, NotListedError, UnavailableError
from market_data_client.state import DEFAULT_STALE_THRESHOLD_MS, PricesState
from market_data_client.tracker import Tracker

DEFAULT_INTERVAL_S = 4.0
DEFAULT_REFRESH_S = 1.0
RETRY_AFTER_JITTER_S = 1.0
ERROR_BACKOFF_CAP_S = 60.0


class PollSchedule:
    """When to read next, from how the last read went."""

    def __init__(self, interval_s: float, backoff: Backoff | None = None) -> None:
        self.interval_s = interval_s
        self._errors = backoff or Backoff(base_s=interval_s, cap_s=ERROR_BACKOFF_CAP_S)
        self._jitter = Backoff(base_s=RETRY_AFTER_JITTER_S, cap_s=RETRY_AFTER_JITTER_S, floor_s=0.0)

    def after_answer(self) -> float:
        self._errors.reset()
        return self.interval_s

    def after_failure(self, failure: MarketDataError) -> float:
        if isinstance(failure, UnavailableError):
            self._errors.reset()
            wait = failure.retry_after_s if failure.retry_after_s is not None else self.interval_s
            return wait + self._jitter.next_delay_s()
        return max(self.interval_s, self._errors.next_delay_s())


def read_sync(client: PricesClient, tracker: Tracker, schedule: PollSchedule) -> float:
    """One read into ``tracker``; the seconds until the next. A 404 (none listed) is raised: asking
    again brings nothing."""
    sent = now_ms()
    try:
        answer = client.prices(tracker.pairs)
    except NotListedError:
        raise
    except MarketDataError as failure:
        tracker.record_failure(failure, sent, now_ms())
        return schedule.after_failure(failure)
    tracker.record_answer(answer)
    return schedule.after_answer()


async def read_async(client: AsyncPricesClient, tracker: Tracker, schedule: PollSchedule) -> float:
    sent = now_ms()
    try:
        answer = await client.prices(tracker.pairs)
    except NotListedError:
        raise
    except MarketDataError as failure:
        tracker.record_failure(failure, sent, now_ms())
        return schedule.after_failure(failure)
    tracker.record_answer(answer)
    return schedule.after_answer()


def poll(
    client: PricesClient, pairs: Iterable[str], *, interval_s: float = DEFAULT_INTERVAL_S,
    threshold_ms: float = DEFAULT_STALE_THRESHOLD_MS, refresh_s: float | None = DEFAULT_REFRESH_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[PricesState]:  # fmt: skip
    """States for ``pairs``, forever: one after each read, and one every ``refresh_s`` between
    reads (None: only after reads) so ages, and stale flags, move while nothing new comes."""
    tracker = Tracker(normalise_pairs(pairs), threshold_ms=threshold_ms)
    schedule = PollSchedule(interval_s)
    while True:
        next_read = time.monotonic() + read_sync(client, tracker, schedule)
        yield tracker.state()
        while (left := next_read - time.monotonic()) > 0:
            sleep(min(left, refresh_s) if refresh_s else left)
            if refresh_s and next_read - time.monotonic() > 0:
                yield tracker.state(event="tick")


async def poll_async(
    client: AsyncPricesClient, pairs: Iterable[str], *, interval_s: float = DEFAULT_INTERVAL_S,
    threshold_ms: float = DEFAULT_STALE_THRESHOLD_MS, refresh_s: float | None = DEFAULT_REFRESH_S,
) -> AsyncIterator[PricesState]:  # fmt: skip
    """``poll`` for asyncio."""
    tracker = Tracker(normalise_pairs(pairs), threshold_ms=threshold_ms)
    schedule = PollSchedule(interval_s)
    while True:
        next_read = time.monotonic() + await read_async(client, tracker, schedule)
        yield tracker.state()
        while (left := next_read - time.monotonic()) > 0:
            await asyncio.sleep(min(left, refresh_s) if refresh_s else left)
            if refresh_s and next_read - time.monotonic() > 0:
                yield tracker.state(event="tick")
