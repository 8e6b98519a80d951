"""All DynamoDB access: the pair registry and the last-known-good prices.

One table, two item families under fixed partition keys:
  pk="PAIR", sk=<pair>   the registry (which pairs the service lists, and their status)
  pk="LKG",  sk=<pair>   the last known good ticker, written at most once per pair per interval
boto3 is imported here, lazily: the prices API needs it only when the cache is lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from market_data.models import Ticker

if TYPE_CHECKING:
    from market_data.config import Settings

REGISTRY_PK = "PAIR"
LAST_KNOWN_GOOD_PK = "LKG"
ACTIVE = "active"
_NUMBER_FIELDS = ("price", "volume", "quoteVolume", "change24h", "high24h", "low24h")
_INT_FIELDS = ("timestamp", "fetchedAt")

_table: Any = None


def get_table(settings: Settings) -> Any:
    """The process-wide Table, created on first use with explicit timeouts and bounded retries."""
    global _table
    if _table is None:
        import boto3
        from botocore.config import Config

        config = Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 3, "mode": "standard"})
        resource = boto3.resource("dynamodb", endpoint_url=settings.dynamodb_endpoint_url, config=config)
        _table = resource.Table(settings.market_data_table_name)
    return _table


def reset_table() -> None:
    global _table
    _table = None


@dataclass(frozen=True)
class RegistryEntry:
    pair: str
    status: str


def list_registry(table: Any) -> list[RegistryEntry]:
    """Every pair in the registry, whatever its status."""
    entries: list[RegistryEntry] = []
    kwargs: dict[str, Any] = {
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": REGISTRY_PK},
        "ProjectionExpression": "sk, #s",
        "ExpressionAttributeNames": {"#s": "status"},
    }
    while True:
        page = table.query(**kwargs)
        entries.extend(RegistryEntry(item["sk"], item.get("status", ACTIVE)) for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return entries
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def seed_registry(table: Any, pairs: Iterable[str], *, now_ms: int) -> list[str]:
    """Add ``pairs`` as active unless present; safe when several invocations seed at once."""
    client = table.meta.client
    seeded = []
    for pair in pairs:
        try:
            table.put_item(
                Item={"pk": REGISTRY_PK, "sk": pair, "status": ACTIVE, "source": "seed", "createdAt": now_ms},
                ConditionExpression="attribute_not_exists(pk)",
            )
            seeded.append(pair)
        except client.exceptions.ConditionalCheckFailedException:
            pass  # another invocation seeded it first: exactly what we wanted
    return seeded


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
