"""The fetcher's coordination while the cache is lost: slot claims, bans and the heartbeat.

Conditional writes give the same once-per-slot guarantee as SET NX, so a lost cache never means
double fetches or a forgotten ban; every item expires by itself (DynamoDB TTL on expiresAt).
  pk="CLAIM", sk=<slot>    one invocation's claim of a slot
  pk="STATE", sk=ban#<exchange> / heartbeat
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from market_data.contracts import Ban, Heartbeat
from market_data.store.connection import translated

STATE_PK = "STATE"
CLAIM_PK = "CLAIM"


@translated
def claim_slot(table: Any, slot: int, *, owner: str, expires_at_ms: int) -> bool:
    """Claim ``slot`` for ``owner``; False when another invocation holds it."""
    try:
        table.put_item(
            Item={"pk": CLAIM_PK, "sk": str(slot), "owner": owner, "expiresAt": expires_at_ms // 1000},
            ConditionExpression="attribute_not_exists(pk)",
        )
    except table.meta.client.exceptions.ConditionalCheckFailedException:
        return False
    return True


@translated
def put_ban(table: Any, exchange: str, ban: Ban) -> None:
    """Keep an exchange's rate-limit ban durable too (rare writes), so a lost cache cannot forget it.
    Only ever lengthened, as in the cache: a shorter ban than the one stored changes nothing."""
    item = {
        "pk": STATE_PK, "sk": f"ban#{exchange}", "until": ban.until, "status": ban.status,
        "reason": ban.reason, "expiresAt": ban.until // 1000 + 60,
    }  # fmt: skip
    with contextlib.suppress(table.meta.client.exceptions.ConditionalCheckFailedException):
        table.put_item(  # refused when a longer ban is kept already
            Item=item,
            ConditionExpression="attribute_not_exists(pk) OR #until < :until",
            ExpressionAttributeNames={"#until": "until"},
            ExpressionAttributeValues={":until": ban.until},
        )


@translated
def get_bans(table: Any, exchanges: Sequence[str]) -> dict[str, Ban]:
    """The stored bans of ``exchanges``, by exchange (one strongly consistent read each)."""
    bans = {}
    for exchange in exchanges:
        key = {"pk": STATE_PK, "sk": f"ban#{exchange}"}
        item = table.get_item(Key=key, ConsistentRead=True).get("Item")
        if item:
            bans[exchange] = Ban.from_mapping(item)
    return bans


@translated
def put_heartbeat(table: Any, heartbeat: Heartbeat) -> None:
    """The heartbeat while the cache is lost: health still tells running from dead."""
    item = {"pk": STATE_PK, "sk": "heartbeat", **heartbeat.as_dict(), "expiresAt": heartbeat.at // 1000 + 600}
    table.put_item(Item=item)


@translated
def get_heartbeat(table: Any) -> Heartbeat | None:
    item = table.get_item(Key={"pk": STATE_PK, "sk": "heartbeat"}, ConsistentRead=True).get("Item")
    if not item:
        return None
    return Heartbeat.from_mapping({key: int(v) if isinstance(v, Decimal) else v for key, v in item.items()})
