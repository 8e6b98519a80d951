"""Hands each slot this invocation owns to the broadcaster (a tick consumer): the slot's written
pairs and the service's status as the slot saw it. Started asynchronously from a thread of its
own, so pushing to clients never delays a slot, whatever the Invoke API does."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from market_data import push
from market_data.observability import logger
from market_data.stream import DEGRADED, DOWN, OK

if TYPE_CHECKING:
    from fetcher.tick import WrittenTick
    from market_data.config import Settings


def slot_status(written: WrittenTick) -> tuple[str, str]:
    """ok, degraded or down, and why, from what the slot did."""
    if written.paused:
        return DEGRADED, f"fetcher paused: {written.paused}"
    if not written.cache_written:
        return DEGRADED, "cache unreachable: prices come from DynamoDB's last known good and go stale"
    missing = sorted(written.missing)
    if missing and not written.tickers:
        return DOWN, f"no price refreshed: {missing[0]}: {written.missing[missing[0]]}"
    if missing:
        first = missing[0]
        why = written.missing[first]
        return DEGRADED, f"{len(missing)} of {len(written.listed)} pairs not refreshed ({first}: {why})"
    if written.failed_over:
        by_exchange: dict[str, list[str]] = {}
        for pair, exchange in sorted(written.failed_over.items()):
            by_exchange.setdefault(exchange, []).append(pair)
        served = "; ".join(f"{', '.join(pairs)} from {exchange}" for exchange, pairs in by_exchange.items())
        return DEGRADED, f"failed over: {served}"
    return OK, ""


class SlotBroadcast:
    """The consumer: one thread, so a slow Invoke call queues behind the last one, never in a slot."""

    def __init__(self, settings: Settings, starter: push.BroadcastStarter) -> None:
        self.interval_ms = settings.fetch_interval_ms
        self.starter = starter
        self.sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="broadcast")

    def __call__(self, written: WrittenTick) -> None:
        status, reason = slot_status(written)
        payload = {
            "slot": written.slot, "slotMs": written.slot * self.interval_ms, "pairs": sorted(written.tickers),
            "status": status, "reason": reason,
        }  # fmt: skip
        self.sender.submit(self._start, payload)

    def _start(self, payload: dict[str, object]) -> None:
        try:
            self.starter.start(payload)
        except push.PushUnavailableError as exc:
            logger.warning("broadcaster not started; clients miss this slot's update", error=exc.cause)

    def flush(self, timeout_s: float) -> None:
        """Wait for the starts already handed over: Lambda freezes a container once its handler
        returns, and a start left in the thread would run a minute late."""
        self.sender.submit(lambda: None).result(timeout=timeout_s)

    def close(self) -> None:
        self.sender.shutdown(wait=True)
