"""What a connection's messages do: subscribe (then a snapshot of those pairs), unsubscribe,
ping; a bad message gets an error naming the bad value and the connection stays open."""

from __future__ import annotations

from market_data import push, store
from market_data.clock import now_ms
from market_data.config import Settings
from market_data.observability import logger
from market_data.prices import read_prices
from market_data.stream import (
    MAX_PAIRS_PER_CONNECTION,
    StreamMessageError,
    error_message,
    heartbeat_message,
    parse_client_message,
    snapshot_message,
    snapshot_status,
)


def connect(settings: Settings, connection_id: str, *, connected_at: int) -> None:
    store.register_connection(store.get_table(settings), connection_id, connected_at=connected_at)


def disconnect(settings: Settings, connection_id: str) -> None:
    store.forget_connections(store.get_table(settings), [connection_id])


def handle_message(settings: Settings, connection_id: str, body: str | None, *, connected_at: int) -> str:
    """Act on one message and post its answer; returns what was posted (for the logs)."""
    poster = push.get_poster(settings)
    try:
        message = parse_client_message(body)
        if message.action == "ping":
            poster.post(connection_id, heartbeat_message(now_ms()))
            return "heartbeat"
        table = store.get_table(settings)
        if message.action == "unsubscribe":
            store.unsubscribe(table, connection_id, message.pairs)
            return "unsubscribed"
        subscribe(
            table,
            connection_id,
            message.pairs,
            connected_at=connected_at,
            candles=message.candles is not None,
        )
    except StreamMessageError as exc:
        poster.post(connection_id, error_message(exc.code, str(exc)))
        return f"error {exc.code}"
    poster.post(connection_id, snapshot(settings, message.pairs))
    return "snapshot"


def subscribe(
    table: object, connection_id: str, pairs: tuple[str, ...], *, connected_at: int, candles: bool = False
) -> None:
    """Add the pairs (one atomic step: parallel subscriptions on a connection all count), and to
    the candle set with ``candles``."""
    cap = MAX_PAIRS_PER_CONNECTION
    try:
        if store.subscribe(table, connection_id, pairs, max_pairs=cap, candles=candles) is None:
            # Registered before a registry loss, or its $connect was lost: register it again.
            store.register_connection(table, connection_id, connected_at=connected_at)
            store.subscribe(table, connection_id, pairs, max_pairs=cap, candles=candles)
    except store.SubscriptionCapError as exc:
        raise StreamMessageError(
            "too_many_pairs",
            f"too many pairs: the connection holds {exc}, and with {len(pairs)} more it could pass "
            f"{MAX_PAIRS_PER_CONNECTION}; unsubscribe some first",
        ) from None


def snapshot(settings: Settings, pairs: tuple[str, ...]) -> bytes:
    """The pairs' entries as the prices route serves them, and the status they give."""
    answer = read_prices(pairs, settings=settings, now=now_ms())
    try:
        told = store.get_stream_state(store.get_table(settings))
        told_status, told_reason = told.status, told.reason
    except store.StoreUnavailableError as exc:
        logger.warning(
            "stream state unreadable; the snapshot's status comes from its prices", error=exc.cause
        )
        told_status, told_reason = "", ""
    stale = sum(1 for entry in answer.entries.values() if entry["stale"])
    status, reason = snapshot_status(
        told_status, told_reason, stale=stale, missing=len(answer.missing), asked=len(pairs)
    )
    return snapshot_message(answer.entries, answer.missing, status=status, reason=reason)
