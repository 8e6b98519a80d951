"""Price history: a day of 1-minute candles read through the production handler against a raw read
of the same data, prices with and without sparklines, the cache's memory per pair for a day, the
DynamoDB writes per pair-hour, and backfill's time for 100 new pairs within the exchanges' budgets.

Candles are built as the fetcher builds them: its candle consumer handed a day of ticks (every
4 s slot, 21,600 of them) for each pair, against a real redis-server and moto over HTTP. The raw
read is the same ZRANGEBYSCORE and HGET the handler sends, with the same client library; the two
are timed alternately, call by call.
"""

from __future__ import annotations

import copy
import functools
import time
from collections import Counter
from typing import Any

import orjson

from bench.common import Row, configure_service, generated_pairs, percentile, quiet_stdout, real_parts
from bench.read_path import _event as prices_event
from bench.read_path import _fill_cache, _time_interleaved

SCENARIO = "history"
SLOT_MS = 4_000
DAY_MS = 24 * 3_600_000
TARGET_RATIO = 1.5
SPARKLINE_PAIRS = 20
HOURS_SIMULATED = 6  # for the writes per pair-hour
WRITE_PAIRS = 30
BACKFILL_PAIRS = 100
BACKFILL_SAMPLE = 5  # pairs backfilled at the real pace; the rest is the same requests again


def _history_event(pair: str, start: int, end: int) -> dict[str, Any]:
    from tests.support import load_event

    event = copy.deepcopy(load_event("history_get.json"))
    event["queryStringParameters"] = {
        "pair": pair, "interval": "1m", "from": str(start), "to": str(end), "limit": "1500",
    }  # fmt: skip
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in event["queryStringParameters"].items())
    return event


def _feed_day(recorder: Any, pairs: list[str], end_ms: int) -> None:
    """A day of slots for ``pairs`` as the fetcher's candle consumer receives them."""
    from fetcher.tick import WrittenTick
    from market_data.cache.keys import WRITTEN_SLOT
    from market_data.models import Ticker

    first = (end_ms - DAY_MS) // SLOT_MS
    for slot in range(first, end_ms // SLOT_MS):
        at = slot * SLOT_MS
        tickers = {
            pair: Ticker.model_construct(
                pair=pair,
                price=100.0 + (slot % 977) / 7 + index,
                volume=1.0,
                quoteVolume=1.0,
                timestamp=at - 90,
                fetchedAt=at,
                change24h=0.0,
                high24h=1.0,
                low24h=1.0,
                exchange="binance",
                symbol=pair.replace("/", ""),
            )
            for index, pair in enumerate(pairs)
        }
        recorder.redis.set(WRITTEN_SLOT, slot)
        recorder(WrittenTick(slot, tickers, pairs, {}, cache_written=True))


def run(iterations: int = 600) -> list[Row]:
    rows: list[Row] = []
    with real_parts(generated_pairs=BACKFILL_PAIRS) as stack:
        pairs = generated_pairs(SPARKLINE_PAIRS)
        configure_service(stack, pairs, FETCH_INTERVAL_MS=str(SLOT_MS), CANDLE_BACKFILL="false")
        import redis

        import prices_api.handler as handler
        from fetcher.candles import CandleRecorder
        from local_stack.lambda_context import LocalLambdaContext
        from market_data import cache, store
        from market_data.cache.keys import OPEN_CANDLES, SPARKLINES, minute_candles_key
        from market_data.config import get_settings

        settings = get_settings()
        raw = redis.Redis.from_url(stack.redis_url)
        recorder = CandleRecorder(
            settings, cache.get_client(settings), store.get_table(settings), owner="bench"
        )
        now = int(time.time() * 1000)
        with quiet_stdout():
            started = time.perf_counter()
            _feed_day(recorder, pairs, now)
            fed_s = time.perf_counter() - started
            recorder.flush(60)
            _fill_cache(pairs)  # the prices, and a tick of now that closes the last minute fed
        context = LocalLambdaContext("PricesApiFunction", 6)
        pair = pairs[0]
        start, end = now - DAY_MS, now
        event = _history_event(pair, start, end)
        answer = handler.lambda_handler(event, context)
        if answer["statusCode"] != 200:
            raise RuntimeError(f"history answered {answer['statusCode']}: {answer['body'][:300]}")
        candles = len(orjson.loads(answer["body"])["candles"])

        def read_raw() -> None:
            pipe = raw.pipeline(transaction=False)
            pipe.zrangebyscore(minute_candles_key(pair), start, f"({end}")
            pipe.hmget(OPEN_CANDLES, [pair])
            pipe.execute()

        invoke = functools.partial(handler.lambda_handler, event, context)
        with quiet_stdout():
            _time_interleaved(invoke, read_raw, iterations // 5)
            read, plain = _time_interleaved(invoke, read_raw, iterations)
        ratio = percentile(read, 0.5) / percentile(plain, 0.5)
        rows.append(
            Row(
                SCENARIO,
                f"a day of 1-minute candles ({candles}), handler against the raw read",
                {
                    "handler_p50_us": round(percentile(read, 0.5)),
                    "handler_p99_us": round(percentile(read, 0.99)),
                    "raw_p50_us": round(percentile(plain, 0.5)),
                    "raw_p99_us": round(percentile(plain, 0.99)),
                    "ratio_p50": round(ratio, 2),
                    "body_bytes": len(answer["body"]),
                },
                limit="ZRANGEBYSCORE + HMGET of the same candles",
                target=f"p50 <= {TARGET_RATIO} x raw",
                met=ratio <= TARGET_RATIO,
            )
        )
        rows.append(_sparkline_row(handler, context, pairs, iterations))
        memory = int(raw.memory_usage(minute_candles_key(pair)) or 0)  # type: ignore[arg-type]
        open_share = int(raw.memory_usage(OPEN_CANDLES) or 0) / len(pairs)  # type: ignore[arg-type]
        spark_share = int(raw.memory_usage(SPARKLINES) or 0) / len(pairs)  # type: ignore[arg-type]
        rows.append(
            Row(
                SCENARIO,
                "cache memory per pair for a day of 1-minute candles",
                {
                    "candles": raw.zcard(minute_candles_key(pair)),
                    "sorted_set_bytes": memory,
                    "open_candle_bytes": round(open_share),
                    "sparkline_bytes": round(spark_share),
                    "per_pair_kb": round((memory + open_share + spark_share) / 1024, 1),
                    "feed_s_per_pair_day": round(fed_s / len(pairs), 2),
                },
                notes=[
                    "MEMORY USAGE of the keys on a real redis-server; the open-candle and sparkline "
                    "hashes shared out"
                ],
            )
        )
        rows.append(_writes_row(stack))
        raw.close()
        recorder.close()
    rows += _backfill_rows()
    return rows


def _sparkline_row(handler: Any, context: Any, pairs: list[str], iterations: int) -> Row:
    plain_event = prices_event(pairs)
    spark_event = copy.deepcopy(plain_event)
    spark_event["queryStringParameters"]["include"] = "sparkline"
    spark_event["rawQueryString"] += "&include=sparkline"
    answer = handler.lambda_handler(spark_event, context)
    if answer["statusCode"] != 200 or '"sparkline":[' not in answer["body"]:
        raise RuntimeError(f"prices with sparklines answered {answer['statusCode']}")
    with quiet_stdout():
        _time_interleaved(
            functools.partial(handler.lambda_handler, spark_event, context),
            functools.partial(handler.lambda_handler, plain_event, context),
            iterations // 5,
        )
        spark, plain = _time_interleaved(
            functools.partial(handler.lambda_handler, spark_event, context),
            functools.partial(handler.lambda_handler, plain_event, context),
            iterations,
        )
    plain_body = handler.lambda_handler(plain_event, context)["body"]
    return Row(
        SCENARIO,
        f"prices for {len(pairs)} pairs with sparklines, against without",
        {
            "with_p50_us": round(percentile(spark, 0.5)),
            "with_p99_us": round(percentile(spark, 0.99)),
            "without_p50_us": round(percentile(plain, 0.5)),
            "without_p99_us": round(percentile(plain, 0.99)),
            "ratio_p50": round(percentile(spark, 0.5) / percentile(plain, 0.5), 2),
            "body_bytes_with": len(answer["body"]),
            "body_bytes_without": len(plain_body),
        },
    )


def _writes_row(stack: Any) -> Row:
    """The hourly roll-up's DynamoDB writes for WRITE_PAIRS pairs over HOURS_SIMULATED hours of
    slots (every slot's tick handed to the consumer), counted on the table's own client."""
    from fetcher.candles import CandleRecorder
    from market_data import cache, store
    from market_data.config import get_settings

    settings = get_settings()
    table = store.get_table(settings)
    cache.get_client(settings).flushall()  # a cache of its own: no claimed hour, no newer open candle
    written: Counter[str] = Counter()

    def count(params: dict[str, Any], **_: Any) -> None:
        for requests in params.get("RequestItems", {}).values():
            written["items"] += len(requests)
        written["requests"] += 1

    # The operation's own parameters (before-call sees the serialised request instead).
    table.meta.client.meta.events.register("before-parameter-build.dynamodb.BatchWriteItem", count)
    pairs = generated_pairs(WRITE_PAIRS)
    recorders = [CandleRecorder(settings, cache.get_client(settings), table, owner=f"c{i}") for i in range(2)]
    hour = int(time.time() * 1000) // 3_600_000 * 3_600_000 - (HOURS_SIMULATED + 2) * 3_600_000
    from fetcher.tick import WrittenTick
    from market_data.cache.keys import WRITTEN_SLOT
    from market_data.models import Ticker

    with quiet_stdout():
        for slot in range(hour // SLOT_MS, (hour + (HOURS_SIMULATED + 1) * 3_600_000) // SLOT_MS):
            tickers = {
                pair: Ticker.model_construct(pair=pair, price=1.0 + slot % 13, timestamp=slot * SLOT_MS)
                for pair in pairs
            }
            cache.get_client(settings).set(WRITTEN_SLOT, slot)
            # Two containers take turns, as overlapping invocations do.
            recorders[slot % 2](WrittenTick(slot, tickers, pairs, {}, cache_written=True))
        for recorder in recorders:
            recorder.flush(60)
            recorder.close()
    table.meta.client.meta.events.unregister("before-parameter-build.dynamodb.BatchWriteItem", count)
    per_pair_hour = written["items"] / (WRITE_PAIRS * HOURS_SIMULATED)
    return Row(
        SCENARIO,
        f"DynamoDB writes per pair-hour ({WRITE_PAIRS} pairs, {HOURS_SIMULATED} hours, two containers)",
        {"items_per_pair_hour": round(per_pair_hour, 3), "batch_requests": written["requests"]},
        limit="one hourly candle per pair",
        target="<= 1 per pair-hour (and every hour written)",
        met=0.99 <= per_pair_hour <= 1.0,
    )


def _backfill_rows() -> list[Row]:
    """Each exchange's backfill of BACKFILL_SAMPLE pairs at its real pace, against its simulator;
    100 pairs are the same requests BACKFILL_PAIRS / BACKFILL_SAMPLE times over, one pair at a time."""
    from bench.history_backfill import measure_backfill

    return measure_backfill(BACKFILL_PAIRS, BACKFILL_SAMPLE)
