"""Candles from what the fetcher already fetches (a tick consumer): each written tick's prices join
their 1-minute candles in the cache, and once an hour is over its candles are rolled up into one
DynamoDB item per pair, from a thread of its own so that no slot waits for DynamoDB."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from market_data import cache, store
from market_data.candles import HOUR_MS, MINUTE_MS, bucket, decode, roll_up
from market_data.observability import logger

if TYPE_CHECKING:
    from fetcher.tick import WrittenTick
    from market_data.config import Settings


class CandleRecorder:
    """The consumer. ``owner`` names this invocation in the hour's claim."""

    def __init__(self, settings: Settings, redis: Any, table: Any, owner: str) -> None:
        self.interval_ms = settings.fetch_interval_ms
        self.redis, self.table, self.owner = redis, table, owner
        self.roller = ThreadPoolExecutor(max_workers=1, thread_name_prefix="candles")
        # The newest hour this container saw rolled up (by itself or another): not claimed again.
        # A failed roll-up releases its claim and leaves this as it was, so the next tick retries.
        self.rolled_through = 0

    def __call__(self, written: WrittenTick) -> None:
        slot_ms = written.slot * self.interval_ms
        if written.cache_written and written.tickers:
            samples = {pair: (ticker.price, ticker.timestamp) for pair, ticker in written.tickers.items()}
            try:
                cache.add_samples(self.redis, slot=written.slot, slot_ms=slot_ms, samples=samples)
            except cache.CacheUnavailableError as exc:
                logger.warning("candles missed this tick's prices", error=exc.cause)
                return
        hour = bucket(slot_ms, HOUR_MS)
        previous_hour = hour - HOUR_MS
        # A minute into the hour: the last minute's candles have closed, and no tick of it is late.
        if written.cache_written and previous_hour > self.rolled_through and slot_ms >= hour + MINUTE_MS:
            self.roller.submit(self.roll_up_hour, previous_hour, list(written.listed))

    def roll_up_hour(self, hour: int, pairs: list[str]) -> int:
        """The hour's 1-minute candles into one hourly candle per pair, written once (claimed in the
        cache). Returns the candles written (0 when another invocation has the hour)."""
        try:
            if not cache.claim_hour(self.redis, hour, self.owner):
                self.rolled_through = max(self.rolled_through, hour)
                return 0
            minutes = cache.read_minutes(self.redis, pairs, hour, hour + HOUR_MS)
        except cache.CacheUnavailableError as exc:
            logger.warning("hourly candles not rolled up yet", hour=hour, error=exc.cause)
            return 0
        hourly = {}
        for pair, (closed, still_open) in minutes.items():
            candles = [decode(raw) for raw in closed] + ([still_open] if still_open else [])
            if candles:
                hourly[pair] = roll_up(candles, HOUR_MS)[0]
        try:
            written = store.write_hourly_candles(self.table, hourly)
        except store.StoreUnavailableError as exc:
            logger.warning("hourly candles not written; retried next tick", hour=hour, error=exc.cause)
            with contextlib.suppress(cache.CacheUnavailableError):  # else it lapses in two hours
                cache.release_hour(self.redis, hour, self.owner)
            return 0
        self.rolled_through = max(self.rolled_through, hour)
        logger.info("hourly candles written", hour=hour, pairs=written)
        return written

    def flush(self, timeout_s: float) -> None:
        """Wait for a roll-up under way: Lambda freezes the container once the handler returns."""
        self.roller.submit(lambda: None).result(timeout=timeout_s)

    def close(self) -> None:
        self.roller.shutdown(wait=True)
