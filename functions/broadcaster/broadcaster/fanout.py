"""Posting one slot's messages to the connections, a bounded number at a time: a slow or failing
post holds back no other, a gone connection (410) is forgotten, and past the measured capacity of
one invocation the posting is split over more of them."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from broadcaster.plan import Decision, in_shard
from market_data import push, store
from market_data.clock import now_ms
from market_data.config import Settings
from market_data.observability import logger
from market_data.stream import candle_message, heartbeat_message, status_message, update_message

_executor: ThreadPoolExecutor | None = None


def executor(settings: Settings) -> ThreadPoolExecutor:
    """One pool per container, as many threads as posts in flight."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=settings.broadcast_concurrency, thread_name_prefix="post")
    return _executor


@dataclass
class FanOut:
    connections: int = 0
    sent: int = 0
    failed: int = 0
    gone: list[str] = field(default_factory=list)
    duration_ms: float = 0.0
    splits: int = 0


def messages_for(
    decision: Decision, connection: store.Connection, status: bytes | None, heartbeat: bytes | None
) -> list[bytes]:
    """One connection's messages this slot: its changed pairs in one update, the status when it
    changed, each closed candle of its candle pairs, a heartbeat when one is due and nothing else
    was sent."""
    messages = [status] if status is not None else []
    changed = {pair: decision.entries[pair] for pair in connection.pairs if pair in decision.entries}
    if changed:
        messages.append(update_message(decision.notice.slot_ms, changed))
    for pair in connection.candle_pairs:
        messages.extend(candle_message(pair, candle) for candle in decision.candles.get(pair, ()))
    if not messages and heartbeat is not None:
        messages.append(heartbeat)
    return messages


def post_all(settings: Settings, decision: Decision, connections: list[store.Connection]) -> FanOut:
    mine = [c for c in connections if in_shard(c.connection_id, decision.shard, decision.shards)]
    status = status_message(decision.notice.status, decision.notice.reason) if decision.tell_status else None
    heartbeat = heartbeat_message(now_ms()) if decision.heartbeat else None
    work = [(c.connection_id, messages_for(decision, c, status, heartbeat)) for c in mine]
    work = [(connection_id, messages) for connection_id, messages in work if messages]
    poster = push.get_poster(settings)
    result = FanOut(connections=len(mine))
    started = time.perf_counter()

    def deliver(connection_id: str, messages: list[bytes]) -> tuple[int, bool | None]:
        sent = 0
        for message in messages:
            try:
                if not poster.post(connection_id, message):
                    return sent, False  # gone: forget it
            except push.PushUnavailableError as exc:
                logger.debug("post failed", connection_id=connection_id, error=exc.cause)
                return sent, None
            sent += 1
        return sent, True

    futures = {
        connection_id: executor(settings).submit(deliver, connection_id, messages)
        for connection_id, messages in work
    }
    for connection_id, future in futures.items():
        sent, outcome = future.result()
        result.sent += sent
        if outcome is False:
            result.gone.append(connection_id)
        elif outcome is None:
            result.failed += 1
    result.duration_ms = (time.perf_counter() - started) * 1000
    if result.gone:
        try:
            store.forget_connections(store.get_table(settings), result.gone)
        except store.StoreUnavailableError as exc:
            logger.warning(
                "gone connections not forgotten; the next slot's posts find them again", error=exc.cause
            )
    return result
