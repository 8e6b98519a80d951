"""The last known good prices: pk="LKG", sk=<pair>, at most one write per pair per interval."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from market_data.models import Ticker
from market_data.store.connection import translated

LAST_KNOWN_GOOD_PK = "LKG"
_NUMBER_FIELDS = ("price", "volume", "quoteVolume", "change24h", "high24h", "low24h")
_INT_FIELDS = ("timestamp", "fetchedAt")


@translated
def write_last_known_good(table: Any, tickers: Iterable[Ticker]) -> int:
    """Batch-write tickers as last known good (BatchWriteItem, 25 per request, retried unprocessed)."""
    count = 0
    with table.batch_writer() as batch:
        for ticker in tickers:
            item: dict[str, Any] = {"pk": LAST_KNOWN_GOOD_PK, "sk": ticker.pair}
            for name, value in ticker.model_dump().items():
                item[name] = Decimal(repr(value)) if isinstance(value, float) else value
            batch.put_item(Item=item)
            count += 1
    return count


@translated
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
