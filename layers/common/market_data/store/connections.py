"""The WebSocket connections and what each subscribed to, and the stream's shared state.

  pk="CONN", sk=<connection id>   connectedAt, pairs (a string set), expiresAt (TTL)
  pk="STATE", sk="stream"         status, reason, heartbeatSlot: what every connection was last told

In DynamoDB rather than the cache: a lost cache must not silence every connection, since that is
when clients most need a status message (docs/operations.md#push has the cost per slot both ways).
A connection expires when API Gateway would have dropped it (2 hours after it opened: the
broadcaster's heartbeats keep it from going idle); DynamoDB's TTL deletes it later, so reads skip
expired ones themselves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from market_data.store.connection import translated

CONNECTION_PK = "CONN"
STATE_PK = "STATE"
STREAM_STATE_SK = "stream"
CONNECTION_LIFETIME_MS = 2 * 60 * 60 * 1000  # API Gateway's limit on a WebSocket connection


@dataclass(frozen=True)
class Connection:
    connection_id: str
    connected_at: int  # ms
    pairs: tuple[str, ...]  # subscribed, sorted
    candle_pairs: tuple[str, ...] = ()  # of those, the ones whose 1-minute candles it is sent


@dataclass(frozen=True)
class StreamState:
    status: str = ""  # "", ok, degraded or down: the last status every connection was told
    reason: str = ""
    heartbeat_slot: int = 0  # the last slot that sent heartbeats


class SubscriptionCapError(Exception):
    """The connection would hold more pairs than it may."""


@translated
def register_connection(table: Any, connection_id: str, *, connected_at: int) -> None:
    table.put_item(
        Item={
            "pk": CONNECTION_PK, "sk": connection_id, "connectedAt": connected_at,
            "expiresAt": (connected_at + CONNECTION_LIFETIME_MS) // 1000,
        }
    )  # fmt: skip


@translated
def subscribe(
    table: Any, connection_id: str, pairs: Sequence[str], *, max_pairs: int, candles: bool = False
) -> tuple[str, ...] | None:
    """Add ``pairs`` to the connection's set in one atomic step (parallel subscriptions on one
    connection all count), and with ``candles`` to its candle set too; return its pairs, or None
    when it is not registered. Refused with ``SubscriptionCapError`` when the set could pass
    ``max_pairs``."""
    client = table.meta.client
    try:
        answer = table.update_item(
            Key={"pk": CONNECTION_PK, "sk": connection_id},
            UpdateExpression="ADD pairs :pairs, candlePairs :pairs" if candles else "ADD pairs :pairs",
            # Checked before the union is known: a set with room for every pair named.
            ConditionExpression=(
                "attribute_exists(pk) AND (attribute_not_exists(pairs) OR size(pairs) <= :room)"
            ),
            ExpressionAttributeValues={":pairs": set(pairs), ":room": max_pairs - len(pairs)},
            ReturnValues="ALL_NEW",
        )
    except client.exceptions.ConditionalCheckFailedException:
        current = get_connection(table, connection_id)
        if current is None:
            return None
        if set(pairs) <= set(current.pairs):  # nothing new: within the cap whatever its size
            if candles and not set(pairs) <= set(current.candle_pairs):
                table.update_item(
                    Key={"pk": CONNECTION_PK, "sk": connection_id},
                    UpdateExpression="ADD candlePairs :pairs",
                    ExpressionAttributeValues={":pairs": set(pairs)},
                )
            return current.pairs
        raise SubscriptionCapError(len(current.pairs)) from None
    return _connection(answer["Attributes"]).pairs


@translated
def unsubscribe(table: Any, connection_id: str, pairs: Sequence[str]) -> bool:
    """Remove ``pairs`` from the connection's sets (prices and candles) in one atomic step; False
    when not registered."""
    try:
        table.update_item(
            Key={"pk": CONNECTION_PK, "sk": connection_id},
            UpdateExpression="DELETE pairs :pairs, candlePairs :pairs",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":pairs": set(pairs)},
        )
    except table.meta.client.exceptions.ConditionalCheckFailedException:
        return False
    return True


@translated
def get_connection(table: Any, connection_id: str) -> Connection | None:
    item = table.get_item(Key={"pk": CONNECTION_PK, "sk": connection_id}, ConsistentRead=True).get("Item")
    return _connection(item) if item else None


@translated
def forget_connections(table: Any, connection_ids: Sequence[str]) -> None:
    with table.batch_writer() as batch:
        for connection_id in dict.fromkeys(connection_ids):
            batch.delete_item(Key={"pk": CONNECTION_PK, "sk": connection_id})


@translated
def list_connections(table: Any, *, now_ms: int) -> list[Connection]:
    """Every connection API Gateway may still hold, with its pairs (one Query, paged)."""
    found: list[Connection] = []
    query: dict[str, Any] = {
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": CONNECTION_PK},
        "ProjectionExpression": "sk, connectedAt, pairs, candlePairs",
    }
    while True:
        page = table.query(**query)
        found.extend(
            connection
            for connection in map(_connection, page.get("Items", []))
            if connection.connected_at + CONNECTION_LIFETIME_MS > now_ms
        )
        if "LastEvaluatedKey" not in page:
            return found
        query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _connection(item: dict[str, Any]) -> Connection:
    return Connection(
        str(item["sk"]),
        int(item["connectedAt"]),
        tuple(sorted(item.get("pairs") or ())),
        tuple(sorted(item.get("candlePairs") or ())),
    )


@translated
def get_stream_state(table: Any) -> StreamState:
    item = table.get_item(Key={"pk": STATE_PK, "sk": STREAM_STATE_SK}, ConsistentRead=True).get("Item")
    if not item:
        return StreamState()
    slot = item.get("heartbeatSlot")
    heartbeat_slot = int(slot) if isinstance(slot, Decimal) else 0
    return StreamState(str(item.get("status", "")), str(item.get("reason", "")), heartbeat_slot)


@translated
def claim_status(table: Any, status: str, reason: str, *, told: StreamState) -> bool:
    """Record that every connection is being told ``status``; False when another broadcaster
    changed it since ``told`` was read (it tells them, not this one)."""
    with contextlib.suppress(table.meta.client.exceptions.ConditionalCheckFailedException):
        table.update_item(
            Key={"pk": STATE_PK, "sk": STREAM_STATE_SK},
            UpdateExpression="SET #status = :status, reason = :reason",
            ConditionExpression="attribute_not_exists(#status) OR (#status = :was AND reason = :was_reason)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":status": status, ":reason": reason, ":was": told.status, ":was_reason": told.reason,
            },
        )  # fmt: skip
        return True
    return False


@translated
def claim_heartbeat(table: Any, slot: int, *, every_slots: int) -> bool:
    """True for the one broadcaster that sends this round of heartbeats: ``slot`` is at least
    ``every_slots`` after the last round (a conditional write, so parallel broadcasters agree)."""
    with contextlib.suppress(table.meta.client.exceptions.ConditionalCheckFailedException):
        table.update_item(
            Key={"pk": STATE_PK, "sk": STREAM_STATE_SK},
            UpdateExpression="SET heartbeatSlot = :slot",
            ConditionExpression="attribute_not_exists(heartbeatSlot) OR heartbeatSlot <= :due",
            ExpressionAttributeValues={":slot": slot, ":due": slot - every_slots},
        )
        return True
    return False
