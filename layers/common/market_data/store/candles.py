"""Hourly candles: pk="CANDLE#1h#<pair>", sk=<hour start, ms, 13 digits>, one write per pair per
hour, expired by DynamoDB's TTL 90 days after the hour."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from market_data.candles import HOURLY_RETENTION_MS, Candle
from market_data.store.connection import translated

_PRICES = ("open", "high", "low", "close")


def hourly_pk(pair: str) -> str:
    return f"CANDLE#1h#{pair}"


def _sort_key(time: int) -> str:
    return f"{time:013d}"  # sorts as the number does (13 digits until the year 2286)


@translated
def write_hourly_candles(table: Any, candles: Mapping[str, Candle]) -> int:
    """One item per pair (BatchWriteItem, 25 per request, unprocessed ones retried)."""
    return _write(table, list(candles.items()))


@translated
def write_hourly_history(table: Any, pair: str, candles: Sequence[Candle]) -> int:
    """A pair's backfilled hours, each written only where no hour is kept yet (one Query first):
    an hour this service sampled keeps its own candle."""
    if not candles:
        return 0
    kept = {c.time for c in read_hourly_candles(table, pair, candles[0].time, candles[-1].time + 1)}
    return _write(table, [(pair, candle) for candle in candles if candle.time not in kept])


def _write(table: Any, candles: Sequence[tuple[str, Candle]]) -> int:
    with table.batch_writer() as batch:
        for pair, candle in candles:
            item: dict[str, Any] = {
                "pk": hourly_pk(pair),
                "sk": _sort_key(candle.time),
                "samples": candle.samples,
                "source": candle.source,
                # DynamoDB's TTL reads epoch seconds.
                "expiresAt": (candle.time + HOURLY_RETENTION_MS) // 1000,
            }
            item.update({name: Decimal(repr(getattr(candle, name))) for name in _PRICES})
            if candle.volume is not None:
                item["volume"] = Decimal(repr(candle.volume))
            if candle.first_at is not None and candle.last_at is not None:
                item["firstAt"], item["lastAt"] = candle.first_at, candle.last_at
            batch.put_item(Item=item)
    return len(candles)


@translated
def read_hourly_candles(
    table: Any, pair: str, start: int, end: int, *, limit: int | None = None
) -> list[Candle]:
    """``pair``'s hourly candles with times in ``[start, end)``, oldest first (one Query, paged),
    the first ``limit`` of them when given."""
    query: dict[str, Any] = {
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :start AND :last",
        "ExpressionAttributeValues": {
            ":pk": hourly_pk(pair),
            ":start": _sort_key(max(start, 0)),
            ":last": _sort_key(max(end - 1, 0)),
        },
    }
    if limit is not None:
        query["Limit"] = limit
    found: list[Candle] = []
    while True:
        page = table.query(**query)
        found.extend(_candle(item) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page or (limit is not None and len(found) >= limit):
            return found[:limit]
        query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _candle(item: dict[str, Any]) -> Candle:
    volume = item.get("volume")
    first_at, last_at = item.get("firstAt"), item.get("lastAt")
    return Candle(
        int(item["sk"]), float(item["open"]), float(item["high"]), float(item["low"]), float(item["close"]),
        None if volume is None else float(volume), int(item["samples"]), str(item["source"]),
        None if first_at is None else int(first_at), None if last_at is None else int(last_at),
    )  # fmt: skip
