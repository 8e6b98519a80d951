"""Backfill (a tick consumer): a pair that becomes active (seeded, verified or restored) gets its
last day of 1-minute candles, with the exchange's volume, and 90 days of hourly ones where its
exchange keeps them, once, from that exchange's own candle endpoint.

It runs in a thread of its own, one pair at a time, each exchange's requests spaced by its
``backfill_gap_s`` (a share of its rate that the tick leaves over), so no slot waits for it and no
exchange is asked faster than its budget. A pair is claimed in the cache while it is backfilled,
so two invocations never ask for the same history; a failed backfill gives the claim back and the
next tick queues the pair again.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from fetcher.exchanges.base import CandleSource, ExchangeError, RateLimitedError
from market_data import cache, store
from market_data.candles import HOUR_MS, HOURLY_RETENTION_MS, MINUTE_MS, MINUTE_RETENTION_MS, Candle, bucket
from market_data.clock import now_ms
from market_data.observability import logger

if TYPE_CHECKING:
    from collections.abc import Mapping

    from fetcher.tick import WrittenTick


class _OutOfTime(Exception):
    """The invocation is ending: the pair is left for a later one."""


class Backfill:
    """The consumer; ``sources`` are the configured exchanges that serve candles, by name."""

    def __init__(self, redis: Any, table: Any, sources: Mapping[str, CandleSource], owner: str) -> None:
        self.redis, self.table, self.sources, self.owner = redis, table, sources, owner
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backfill")
        self.in_flight: set[str] = set()  # handed to the worker and not finished: not queued twice
        self.stopping = threading.Event()  # set from an invocation's end until the next tick
        self.closed = False
        self.done: list[str] = []  # pairs this container backfilled, for its logs and tests

    def __call__(self, written: WrittenTick) -> None:
        if self.closed:
            return
        self.stopping.clear()  # a tick: the container runs again (after an invocation's flush)
        if not written.cache_written:
            return
        candidates = [pair for pair in written.tickers if pair not in self.in_flight]
        try:
            if written.activated:  # restored, or verified again: a hole where it was not served
                cache.forget_backfilled(self.redis, written.activated)
            if not candidates:
                return
            finished = cache.backfilled(self.redis, candidates)
        except cache.CacheUnavailableError:
            return  # the next tick asks again
        for pair in candidates:
            ticker = written.tickers[pair]
            source = self.sources.get(ticker.exchange)
            if pair in finished or source is None:
                continue
            self.in_flight.add(pair)
            self.worker.submit(self.backfill, pair, source, ticker.symbol)

    def backfill(self, pair: str, source: CandleSource, symbol: str) -> bool:
        """The pair's history from ``source``; True once stored (and marked, so never asked again)."""
        try:
            claimed = not self.stopping.is_set() and cache.claim_backfill(self.redis, pair, self.owner)
        except cache.CacheUnavailableError:
            claimed = False
        if not claimed:  # stopping, or another invocation has it: a later tick asks again
            self.in_flight.discard(pair)
            return False
        done_at = None
        try:
            now = now_ms()
            minutes = self._history(source, symbol, MINUTE_MS, MINUTE_RETENTION_MS, now)
            cache.add_exchange_candles(self.redis, pair, minutes, now_ms=now)
            hours = self._history(source, symbol, HOUR_MS, HOURLY_RETENTION_MS, now)
            if self.stopping.is_set():  # the container is stopping: left whole for a later one
                raise _OutOfTime
            store.write_hourly_history(self.table, pair, hours)
            done_at = now
            self.done.append(pair)
            logger.info(
                "history backfilled", pair=pair, exchange=source.name, minutes=len(minutes), hours=len(hours)
            )
        except _OutOfTime:
            pass
        except (ExchangeError, cache.CacheUnavailableError, store.StoreUnavailableError) as exc:
            if self.stopping.is_set():  # what it spoke to may be going too: expected, not a fault
                logger.info("backfill left for a later invocation", pair=pair, error=str(exc))
            else:
                logger.warning("backfill failed; the pair is tried again", pair=pair, error=str(exc))
        finally:
            with contextlib.suppress(cache.CacheUnavailableError):  # else the claim lapses in 10 min
                cache.finish_backfill(self.redis, pair, self.owner, done_at=done_at)
            self.in_flight.discard(pair)
        return done_at is not None

    def _history(
        self, source: CandleSource, symbol: str, interval_ms: int, span_ms: int, now: int
    ) -> list[Candle]:
        """Closed candles of the last ``span_ms`` (as far back as the exchange keeps), in requests
        of the exchange's maximum, oldest first."""
        end = bucket(now, interval_ms)
        reach = source.candle_reach_ms(interval_ms)
        start = end - min(span_ms, reach if reach is not None else span_ms)
        found: list[Candle] = []
        window = source.max_candles * interval_ms
        for window_start in range(start, end, window):
            self._wait_turn(source)
            try:
                found += source.candles(symbol, interval_ms, window_start, min(window_start + window, end))
            except RateLimitedError as exc:
                self._not_before(source, now_ms() + exc.retry_after_s * 1000)
                raise
            finally:
                # Counted from the answer too: the exchange then sees requests at least a gap apart.
                self._not_before(source, now_ms() + int(source.backfill_gap_s * 1000))
        return found

    def _wait_turn(self, source: CandleSource) -> None:
        """Wait for this request's turn, reserved in the cache: every invocation's backfill of one
        exchange shares one pace (overlapping invocations would otherwise each ask at it)."""
        gap_ms = int(source.backfill_gap_s * 1000)
        at = cache.reserve_backfill_request(self.redis, source.name, gap_ms=gap_ms, now_ms=now_ms())
        wait_s = (at - now_ms()) / 1000
        if (wait_s > 0 and self.stopping.wait(wait_s)) or self.stopping.is_set():
            raise _OutOfTime

    def _not_before(self, source: CandleSource, at_ms: int) -> None:
        with contextlib.suppress(cache.CacheUnavailableError):  # the reservation still spaces them
            cache.backfill_not_before(self.redis, source.name, at_ms, now_ms=now_ms())

    def flush(self, timeout_s: float) -> None:
        """The invocation is ending: no new request, and the pair under way is left for a later
        invocation (Lambda freezes the container once the handler returns)."""
        self.stopping.set()
        with contextlib.suppress(TimeoutError):
            self.worker.submit(lambda: None).result(timeout=timeout_s)

    def close(self) -> None:
        self.closed = True
        self.stopping.set()
        self.worker.shutdown(wait=True, cancel_futures=True)


def candle_sources(exchanges: Mapping[str, Any]) -> dict[str, CandleSource]:
    """The exchanges that serve their own candles."""
    return {
        name: exchange for name, exchange in exchanges.items() if callable(getattr(exchange, "candles", None))
    }
