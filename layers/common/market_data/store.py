"""All DynamoDB access: the pair registry and the last-known-good prices.

One table, item families under fixed partition keys:
  pk="PAIR", sk=<pair>              the registry: every pair, its status and why (whitelist records)
  pk="LKG",  sk=<pair>              the last known good ticker, at most one write per pair per interval
  pk="COUNTER", sk="pending"        how many pairs are pending (the WHITELIST_MAX_PENDING cap)
  pk="SOURCE", sk=<ip>#<hour>       submissions per source address per hour (expires by TTL)
  pk="CLAIM", sk=<slot> / pk="STATE" the fetcher's slot claims, ban and heartbeat while the cache is lost
boto3 is imported here, lazily: the prices API needs it only when the cache is lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from market_data.models import PairRecord, StatusChange, Ticker

if TYPE_CHECKING:
    from market_data.config import Settings

REGISTRY_PK = "PAIR"
LAST_KNOWN_GOOD_PK = "LKG"
COUNTER_PK = "COUNTER"
SOURCE_PK = "SOURCE"
ACTIVE = "active"
PENDING = "pending"
SERVED = ("active", "suspended")  # statuses whose prices the API serves
_HOUR_MS = 3_600_000
_NUMBER_FIELDS = ("price", "volume", "quoteVolume", "change24h", "high24h", "low24h")
_INT_FIELDS = ("timestamp", "fetchedAt")

_table: Any = None


def get_table(settings: Settings) -> Any:
    """The process-wide Table, created on first use with explicit timeouts and bounded retries."""
    global _table
    if _table is None:
        import boto3
        from botocore.config import Config

        # Two attempts at most: a throttled or failing table must not hold a tick (or a request on
        # the cache-loss path) for seconds of backoff; callers fall back and retry next time.
        config = Config(
            connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 2, "mode": "standard"}
        )
        resource = boto3.resource("dynamodb", endpoint_url=settings.dynamodb_endpoint_url, config=config)
        _table = resource.Table(settings.market_data_table_name)
    return _table


def reset_table() -> None:
    global _table
    _table = None


class PendingCapReachedError(Exception):
    """WHITELIST_MAX_PENDING submissions are already waiting for verification."""


class SourceLimitError(Exception):
    """One source address submitted more than its hourly allowance."""


class StatusConflictError(Exception):
    """The pair's status is not one the change may start from (it changed meanwhile)."""


def _record(item: dict[str, Any]) -> PairRecord:
    values = {k: v for k, v in item.items() if k not in ("pk", "sk")}
    for name in ("submittedAt", "verifiedAt"):
        if values.get(name) is not None:
            values[name] = int(values[name])
    change = values.get("lastStatusChange")
    if change:
        values["lastStatusChange"] = StatusChange(**{**change, "at": int(change["at"])})
    return PairRecord(pair=item["sk"], **{k: v for k, v in values.items() if k != "pair"})


def list_registry(table: Any, status: str | None = None) -> list[PairRecord]:
    """Every pair in the registry (one partition, paginated), optionally of one status."""
    records: list[PairRecord] = []
    kwargs: dict[str, Any] = {
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": REGISTRY_PK},
    }
    if status is not None:
        kwargs["FilterExpression"] = "#s = :status"
        kwargs["ExpressionAttributeNames"] = {"#s": "status"}
        kwargs["ExpressionAttributeValues"][":status"] = status
    while True:
        page = table.query(**kwargs)
        records.extend(_record(item) for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return records
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def get_record(table: Any, pair: str) -> PairRecord | None:
    item = table.get_item(Key={"pk": REGISTRY_PK, "sk": pair}, ConsistentRead=True).get("Item")
    return _record(item) if item else None


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
                    "pair": pair,
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


def count_submission(table: Any, source: str, *, now_ms: int, limit: int) -> None:
    """Count one submission from ``source`` in the current hour; raise when over ``limit``.

    HTTP APIs have no per-client throttling, so the app counts: one atomic conditional ADD on an
    item that expires by itself (DynamoDB TTL) after the hour.
    """
    hour = now_ms // _HOUR_MS
    try:
        table.update_item(
            Key={"pk": SOURCE_PK, "sk": f"{source}#{hour}"},
            UpdateExpression="ADD #n :one SET expiresAt = :expires",
            ConditionExpression="attribute_not_exists(#n) OR #n < :limit",
            ExpressionAttributeNames={"#n": "count"},
            ExpressionAttributeValues={":one": 1, ":limit": limit, ":expires": (hour + 2) * _HOUR_MS // 1000},
        )
    except table.meta.client.exceptions.ConditionalCheckFailedException:
        raise SourceLimitError(source) from None


def create_submission(table: Any, pair: str, *, now_ms: int, max_pending: int) -> tuple[PairRecord, bool]:
    """Record ``pair`` as pending, or return the record that exists: (record, created).

    One transaction puts the record (only if absent) and counts it against the pending cap, so
    parallel submissions of one pair leave exactly one record, and the cap cannot be overshot.
    """
    existing = get_record(table, pair)
    if existing is not None:
        return existing, False
    item = {
        "pk": REGISTRY_PK, "sk": pair, "pair": pair, "status": PENDING, "origin": "submission",
        "submittedAt": now_ms, "reason": "waiting for verification against the exchange",
        "lastStatusChange": {"from": None, "to": PENDING, "at": now_ms, "reason": "submitted"},
    }  # fmt: skip
    try:
        _transact(
            table,
            [
                {"Put": {"Item": item, "ConditionExpression": "attribute_not_exists(pk)"}},
                _pending_delta(+1, max_pending),
            ],
        )
    except _Cancelled as cancelled:
        if cancelled.reasons[0] == "ConditionalCheckFailed":  # created by a parallel submission
            record = get_record(table, pair)
            if record is not None:
                return record, False
        if cancelled.reasons[1] == "ConditionalCheckFailed":
            raise PendingCapReachedError(pair) from None
        raise
    return _record(item), True


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
) -> PairRecord:
    """Move ``pair`` to status ``to`` if its current status is one of ``allowed_from``.

    The condition makes the change safe against a concurrent one (an admin revoke while the
    fetcher verifies); the pending counter moves in the same transaction. A change that lost such
    a race is tried again on the new status when that one is allowed too (revoking a pair the
    fetcher has just activated is still a revoke), and refused otherwise.
    """
    allowed = list(allowed_from)
    for _attempt in range(3):
        current = get_record(table, pair)
        if current is None:
            raise KeyError(pair)
        if current.status not in allowed:
            raise StatusConflictError(f"{pair} is {current.status}, not {' or '.join(allowed)}")
        try:
            _transact(
                table, _status_actions(current, to, reason, now_ms, exchange, symbol, verified, max_pending)
            )
        except _Cancelled as cancelled:
            if cancelled.reasons[0] == "ConditionalCheckFailed":
                continue  # changed meanwhile: look again
            if len(cancelled.reasons) > 1 and cancelled.reasons[1] == "ConditionalCheckFailed":
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
) -> list[dict[str, Any]]:
    values: dict[str, Any] = {
        ":to": to, ":reason": reason, ":from": current.status,
        ":change": {"from": current.status, "to": to, "at": now_ms, "reason": reason},
    }  # fmt: skip
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
    serialises them), so the actions read like the Table calls above."""
    items = [{kind: {"TableName": table.name, **spec}} for action in actions for kind, spec in action.items()]
    client = table.meta.client
    try:
        client.transact_write_items(TransactItems=items)
    except client.exceptions.TransactionCanceledException as exc:
        reasons = [reason.get("Code", "None") for reason in exc.response.get("CancellationReasons", [])]
        raise _Cancelled(reasons) from exc


def write_last_known_good(table: Any, tickers: Iterable[Ticker], *, now_ms: int) -> int:
    """Batch-write tickers as last known good (BatchWriteItem, 25 per request, retried unprocessed)."""
    count = 0
    with table.batch_writer() as batch:
        for ticker in tickers:
            item: dict[str, Any] = {"pk": LAST_KNOWN_GOOD_PK, "sk": ticker.pair, "updatedAt": now_ms}
            for name, value in ticker.model_dump().items():
                item[name] = Decimal(repr(value)) if isinstance(value, float) else value
            batch.put_item(Item=item)
            count += 1
    return count


def read_last_known_good(table: Any, pairs: Sequence[str] | None) -> dict[str, Ticker]:
    """Last known good tickers for ``pairs`` (all of them when None).

    One Query of the whole LKG partition: it holds one small item per listed pair (a few hundred
    at most), so this is one request where BatchGetItem would need one per 100 pairs.
    """
    wanted = None if pairs is None else set(pairs)
    kwargs: dict[str, Any] = {
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": LAST_KNOWN_GOOD_PK},
    }
    found: dict[str, Ticker] = {}
    while True:
        page = table.query(**kwargs)
        for item in page["Items"]:
            if wanted is None or item["sk"] in wanted:
                found[item["sk"]] = _ticker_from_item(item)
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _ticker_from_item(item: dict[str, Any]) -> Ticker:
    values: dict[str, object] = {name: float(item[name]) for name in _NUMBER_FIELDS}
    values.update({name: int(item[name]) for name in _INT_FIELDS})
    values.update(pair=item["sk"], exchange=item.get("exchange", "binance"), symbol=item.get("symbol", ""))
    # Validated when it was written; constructing without re-validation keeps the fallback fast.
    return Ticker.model_construct(**values)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- cache-loss fallback
# While the cache is unreachable, the fetcher's coordination moves here, so a lost cache never means
# double fetches or a forgotten ban: conditional writes give the same once-per-slot guarantee as
# SET NX, and every item expires by itself (DynamoDB TTL on expiresAt).

STATE_PK = "STATE"
CLAIM_PK = "CLAIM"


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


def put_ban(table: Any, exchange: str, ban: dict[str, Any]) -> None:
    """Keep an exchange's rate-limit ban durable too (rare writes), so a lost cache cannot forget it."""
    item = {"pk": STATE_PK, "sk": f"ban#{exchange}", **ban, "expiresAt": int(ban["until"]) // 1000 + 60}
    table.put_item(Item=item)


def get_bans(table: Any, exchanges: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The stored bans of ``exchanges``, by exchange (one strongly consistent read each)."""
    bans = {}
    for exchange in exchanges:
        key = {"pk": STATE_PK, "sk": f"ban#{exchange}"}
        item = table.get_item(Key=key, ConsistentRead=True).get("Item")
        if item:
            bans[exchange] = {
                "until": int(item["until"]),
                "status": int(item["status"]),
                "reason": item.get("reason"),
            }
    return bans


def put_heartbeat(table: Any, heartbeat: dict[str, Any]) -> None:
    """The heartbeat while the cache is lost: health still tells running from dead."""
    table.put_item(
        Item={"pk": STATE_PK, "sk": "heartbeat", **heartbeat, "expiresAt": heartbeat["at"] // 1000 + 600}
    )


def get_heartbeat(table: Any) -> dict[str, Any] | None:
    item = table.get_item(Key={"pk": STATE_PK, "sk": "heartbeat"}, ConsistentRead=True).get("Item")
    if not item:
        return None
    return {key: int(value) if isinstance(value, Decimal) else value for key, value in item.items()}
