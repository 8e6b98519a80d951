"""The pair registry: seeding, whitelist submissions and their caps, and status changes.

pk="PAIR", sk=<pair>         every pair, its status and why (whitelist records)
pk="COUNTER", sk="pending"   how many pairs are pending (the WHITELIST_MAX_PENDING cap)
pk="SOURCE", sk=<ip>#<hour>  submissions per source address per hour (expires by TTL)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from market_data.errors import (
    PairNotFoundError,
    PendingCapReachedError,
    SourceLimitError,
    StatusConflictError,
)
from market_data.models import PairRecord, StatusChange
from market_data.statuses import ACTIVE, PENDING
from market_data.store.connection import StoreUnavailableError, translated

REGISTRY_PK = "PAIR"
COUNTER_PK = "COUNTER"
SOURCE_PK = "SOURCE"
_HOUR_MS = 3_600_000
CONDITION_FAILED = "ConditionalCheckFailed"  # a transaction's cancellation reason for a failed condition


def _record(item: dict[str, Any]) -> PairRecord:
    values = {k: v for k, v in item.items() if k not in ("pk", "sk")}
    for name in ("submittedAt", "verifiedAt"):
        if values.get(name) is not None:
            values[name] = int(values[name])
    change = values.get("lastStatusChange")
    if change:
        values["lastStatusChange"] = StatusChange(**{**change, "at": int(change["at"])})
    return PairRecord(pair=item["sk"], **{k: v for k, v in values.items() if k != "pair"})


def _registry_query(status: str | None) -> dict[str, Any]:
    """The Query of the registry's partition, optionally filtered to one status."""
    kwargs: dict[str, Any] = {
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": REGISTRY_PK},
    }
    if status is not None:
        kwargs["FilterExpression"] = "#s = :status"
        kwargs["ExpressionAttributeNames"] = {"#s": "status"}
        kwargs["ExpressionAttributeValues"][":status"] = status
    return kwargs


@translated
def list_registry(table: Any, status: str | None = None) -> list[PairRecord]:
    """Every pair in the registry (one partition, paginated), optionally of one status."""
    records: list[PairRecord] = []
    kwargs = _registry_query(status)
    while True:
        page = table.query(**kwargs)
        records.extend(_record(item) for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return records
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@translated
def list_registry_page(
    table: Any, *, status: str | None, limit: int, after: str | None
) -> tuple[list[PairRecord], str | None]:
    """Up to ``limit`` pairs after the pair ``after`` (in pair order), optionally of one status,
    and the pair to continue after (None: no more). DynamoDB applies its Limit before the status
    filter, so short pages are read on until ``limit`` records are found or the partition ends."""
    records: list[PairRecord] = []
    kwargs = _registry_query(status)
    while len(records) < limit:
        if after is not None:
            kwargs["ExclusiveStartKey"] = {"pk": REGISTRY_PK, "sk": after}
        page = table.query(Limit=limit - len(records), **kwargs)
        records.extend(_record(item) for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return records, None
        after = str(page["LastEvaluatedKey"]["sk"])
    return records, after


@translated
def get_record(table: Any, pair: str) -> PairRecord | None:
    item = table.get_item(Key={"pk": REGISTRY_PK, "sk": pair}, ConsistentRead=True).get("Item")
    return _record(item) if item else None


@translated
def seed_registry(table: Any, pairs: Iterable[str], *, now_ms: int) -> list[str]:
    """Add ``pairs`` as active unless present; safe when several invocations seed at once."""
    client = table.meta.client
    seeded = []
    for pair in pairs:
        try:
            table.put_item(
                Item={
                    "pk": REGISTRY_PK,
                    "sk": pair,
                    "status": ACTIVE,
                    "origin": "seed",
                    "submittedAt": now_ms,
                    "reason": "listed by configuration (TRADING_PAIRS)",
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
            seeded.append(pair)
        except client.exceptions.ConditionalCheckFailedException:
            pass  # another invocation seeded it first: exactly what we wanted
    return seeded


@translated
def create_submission(
    table: Any, pair: str, *, source: str, now_ms: int, max_pending: int, max_per_source: int
) -> tuple[PairRecord, bool]:
    """Record ``pair`` as pending, or return the record that exists: (record, created).

    One transaction puts the record (only if absent), counts it against the pending cap, and counts
    it against ``source``'s hourly allowance (HTTP APIs have no per-client throttling, so the app
    counts, on an item that expires by itself after the hour). Parallel submissions of one pair
    leave exactly one record, and only the one that created it is counted: a duplicate is answered
    with the record, never refused, whatever the caps.
    """
    existing = get_record(table, pair)
    if existing is not None:
        return existing, False
    item = {
        "pk": REGISTRY_PK, "sk": pair, "status": PENDING, "origin": "submission",
        "submittedAt": now_ms, "reason": "waiting for verification against the exchange",
        "lastStatusChange": {"from": None, "to": PENDING, "at": now_ms, "reason": "submitted"},
    }  # fmt: skip
    try:
        _transact(
            table,
            [
                {"Put": {"Item": item, "ConditionExpression": "attribute_not_exists(pk)"}},
                _pending_delta(+1, max_pending),
                _source_count(source, now_ms, max_per_source),
            ],
        )
    except _Cancelled as cancelled:
        created_meanwhile, pending_full, source_spent = (
            reason == CONDITION_FAILED for reason in [*cancelled.reasons, "", "", ""][:3]
        )
        if created_meanwhile:  # by a parallel submission: this one is its duplicate
            record = get_record(table, pair)
            if record is not None:
                return record, False
        if source_spent:
            raise SourceLimitError(source) from None
        if pending_full:
            raise PendingCapReachedError(pair) from None
        raise
    return _record(item), True


def _source_count(source: str, now_ms: int, limit: int) -> dict[str, Any]:
    """One more submission from ``source`` this hour, refused past ``limit``."""
    hour = now_ms // _HOUR_MS
    expires = (hour + 2) * _HOUR_MS // 1000
    return {
        "Update": {
            "Key": {"pk": SOURCE_PK, "sk": f"{source}#{hour}"},
            "UpdateExpression": "ADD #n :one SET expiresAt = :expires",
            "ConditionExpression": "attribute_not_exists(#n) OR #n < :limit",
            "ExpressionAttributeNames": {"#n": "count"},
            "ExpressionAttributeValues": {":one": 1, ":limit": limit, ":expires": expires},
        }
    }


@translated
def change_status(
    table: Any,
    pair: str,
    *,
    to: str,
    reason: str,
    now_ms: int,
    allowed_from: Iterable[str],
    exchange: str | None = None,
    symbol: str | None = None,
    verified: bool = False,
    max_pending: int | None = None,
    by: str | None = None,
) -> PairRecord:
    """Move ``pair`` to status ``to`` if its current status is one of ``allowed_from``; ``by``
    (an administrator's ARN) is kept on the change.

    The condition makes the change safe against a concurrent one (an admin revoke while the
    fetcher verifies); the pending counter moves in the same transaction. A change that lost such
    a race is tried again on the new status when that one is allowed too (revoking a pair the
    fetcher has just activated is still a revoke), and refused otherwise.
    """
    allowed = list(allowed_from)
    for _attempt in range(3):
        current = get_record(table, pair)
        if current is None:
            raise PairNotFoundError(f"pair {pair} has never been submitted")
        if current.status not in allowed:
            raise StatusConflictError(f"{pair} is {current.status}, not {' or '.join(allowed)}")
        try:
            _transact(
                table,
                _status_actions(current, to, reason, now_ms, exchange, symbol, verified, max_pending, by),
            )
        except _Cancelled as cancelled:
            if cancelled.reasons[0] == CONDITION_FAILED:
                continue  # changed meanwhile: look again
            if len(cancelled.reasons) > 1 and cancelled.reasons[1] == CONDITION_FAILED:
                raise PendingCapReachedError(pair) from None
            raise
        record = get_record(table, pair)
        assert record is not None
        return record
    raise StatusConflictError(f"{pair} kept changing meanwhile; try again")


def _status_actions(
    current: PairRecord,
    to: str,
    reason: str,
    now_ms: int,
    exchange: str | None,
    symbol: str | None,
    verified: bool,
    max_pending: int | None,
    by: str | None,
) -> list[dict[str, Any]]:
    change: dict[str, Any] = {"from": current.status, "to": to, "at": now_ms, "reason": reason}
    if by is not None:
        change["by"] = by
    values: dict[str, Any] = {":to": to, ":reason": reason, ":from": current.status, ":change": change}
    update = "SET #s = :to, reason = :reason, lastStatusChange = :change"
    if exchange is not None:
        update += ", exchange = :exchange, symbol = :symbol"
        values.update({":exchange": exchange, ":symbol": symbol})
    if verified:
        update += ", verifiedAt = :now"
        values[":now"] = now_ms
    actions: list[dict[str, Any]] = [
        {
            "Update": {
                "Key": {"pk": REGISTRY_PK, "sk": current.pair},
                "UpdateExpression": update,
                "ConditionExpression": "#s = :from",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": values,
            }
        }
    ]
    if current.status == PENDING and to != PENDING:
        actions.append(_pending_delta(-1, None))
    elif current.status != PENDING and to == PENDING:
        actions.append(_pending_delta(+1, max_pending))
    return actions


def _pending_delta(delta: int, cap: int | None) -> dict[str, Any]:
    update: dict[str, Any] = {
        "Key": {"pk": COUNTER_PK, "sk": PENDING},
        "UpdateExpression": "ADD #n :delta",
        "ExpressionAttributeNames": {"#n": "count"},
        "ExpressionAttributeValues": {":delta": delta},
    }
    if cap is not None:
        update["ConditionExpression"] = "attribute_not_exists(#n) OR #n < :cap"
        update["ExpressionAttributeValues"][":cap"] = cap
    return {"Update": update}


class _Cancelled(Exception):
    def __init__(self, reasons: list[str]) -> None:
        super().__init__(reasons)
        self.reasons = reasons


def _transact(table: Any, actions: list[dict[str, Any]]) -> None:
    """TransactWriteItems on this table. The resource's own client takes plain Python values (boto3
    serialises them), so the actions read like the Table calls above.

    A cancellation for a failed condition is the caller's to read (``_Cancelled``: which item's); one
    for any other reason (a conflicting transaction, throttling) says nothing about the data and
    is ``StoreUnavailableError``: the same change may simply be tried again.
    """
    items = [{kind: {"TableName": table.name, **spec}} for action in actions for kind, spec in action.items()]
    client = table.meta.client
    try:
        client.transact_write_items(TransactItems=items)
    except client.exceptions.TransactionCanceledException as exc:
        reasons = [reason.get("Code", "None") for reason in exc.response.get("CancellationReasons", [])]
        if CONDITION_FAILED not in reasons:
            raise StoreUnavailableError(exc) from exc
        raise _Cancelled(reasons) from exc
