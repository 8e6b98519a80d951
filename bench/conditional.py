"""Cheaper polling: the gzip body for 20 pairs against the plain one, the read path answering 304
against a raw HMGET of the same fields, and a client polling every second against 4 s slots.

The handler is the production one with real API Gateway events; the cache was filled by a real
fetcher tick (and, for the poller, a fetcher ticking real 4 s slots on its own thread).
"""

from __future__ import annotations

import base64
import functools
import gzip
import threading
import time
from typing import Any

from bench.common import Row, configure_service, generated_pairs, percentile, quiet_stdout, real_parts
from bench.read_path import _event, _fill_cache, _time_interleaved

SCENARIO = "conditional"
PAIRS = 20
TARGET_GZIP_SHARE = 0.25
TARGET_304_RATIO = 1.2
TARGET_304_SHARE = 0.7
SLOT_MS = 4_000
POLL_S = 1.0
POLLS = 24


def run(iterations: int = 3000) -> list[Row]:
    rows = []
    with real_parts(generated_pairs=PAIRS) as stack:
        pairs = generated_pairs(PAIRS)
        configure_service(stack, pairs, FETCH_INTERVAL_MS=str(SLOT_MS), CANDLE_BACKFILL="false")
        import redis

        import prices_api.handler as prices
        from local_stack.lambda_context import LocalLambdaContext
        from market_data import cache

        context = LocalLambdaContext("PricesApiFunction", 6)
        with quiet_stdout():
            _fill_cache(pairs)
        rows.append(_gzip_row(prices, context, pairs))
        raw = redis.Redis.from_url(stack.redis_url)
        event = _event(pairs[:10])
        first = prices.lambda_handler(event, context)
        conditional = {**event, "headers": {**event["headers"], "if-none-match": first["headers"]["ETag"]}}
        if prices.lambda_handler(conditional, context)["statusCode"] != 304:
            raise RuntimeError("no 304 for the answer's own ETag")
        invoke = functools.partial(prices.lambda_handler, conditional, context)
        read_raw = functools.partial(raw.hmget, cache.STALE_COPIES, pairs[:10])
        with quiet_stdout():
            _time_interleaved(invoke, read_raw, iterations // 5)
            answered, hmget = _time_interleaved(invoke, read_raw, iterations)
        ratio = percentile(answered, 0.5) / percentile(hmget, 0.5)
        rows.append(
            Row(
                SCENARIO,
                "the read path answering 304, 10 pairs",
                {
                    "handler_p50_us": round(percentile(answered, 0.5), 1),
                    "handler_p99_us": round(percentile(answered, 0.99), 1),
                    "hmget_p50_us": round(percentile(hmget, 0.5), 1),
                    "ratio_p50": round(ratio, 2),
                },
                limit="raw HMGET of the same fields",
                target=f"p50 <= {TARGET_304_RATIO} x HMGET",
                met=ratio <= TARGET_304_RATIO,
            )
        )
        raw.close()
        rows.append(_poller_row(prices, context, pairs))
    return rows


def _gzip_row(prices: Any, context: Any, pairs: list[str]) -> Row:
    event = _event(pairs)
    plain = prices.lambda_handler(
        {**event, "headers": {**event["headers"], "accept-encoding": "identity"}}, context
    )
    zipped_event = {**event, "headers": {**event["headers"], "accept-encoding": "gzip, deflate, br"}}
    zipped = prices.lambda_handler(zipped_event, context)
    body = base64.b64decode(zipped["body"])
    if gzip.decompress(body).decode() != plain["body"]:
        raise RuntimeError("the gzip body is not the plain one")
    share = len(body) / len(plain["body"].encode())
    started = time.perf_counter()
    for _ in range(500):
        gzip.compress(plain["body"].encode(), compresslevel=6, mtime=0)
    level6_us = (time.perf_counter() - started) / 500 * 1e6
    started = time.perf_counter()
    for _ in range(500):
        gzip.compress(plain["body"].encode(), compresslevel=9, mtime=0)
    level9_us = (time.perf_counter() - started) / 500 * 1e6
    level9_share = len(gzip.compress(plain["body"].encode(), compresslevel=9, mtime=0)) / len(plain["body"])
    return Row(
        SCENARIO,
        f"gzip body for {len(pairs)} pairs against the plain one",
        {
            "plain_bytes": len(plain["body"]),
            "gzip_bytes": len(body),
            "share": round(share, 3),
            "level6_us": round(level6_us, 1),
            "level9_us": round(level9_us, 1),
            "level9_share": round(level9_share, 3),
        },
        target=f"<= {TARGET_GZIP_SHARE:.0%} of the plain body",
        met=share <= TARGET_GZIP_SHARE,
        notes=["br not measured: no brotli module in the runtime or the project's dependencies"],
    )


def _poller_row(prices: Any, context: Any, pairs: list[str]) -> Row:
    """A fetcher ticking real 4 s slots on a thread; a client polling every second, sending back
    the ETag it last got."""
    from fetcher.deps import build_fetcher
    from fetcher.loop import LoopSummary, run_slot
    from market_data.config import load_settings

    container = build_fetcher(load_settings())
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            slot_start = (time.time() * 1000 // SLOT_MS + 1) * SLOT_MS
            if stop.wait(max(slot_start / 1000 - time.time(), 0)):
                break
            run_slot(container, int(slot_start // SLOT_MS), "bench-poller", LoopSummary())

    ticker = threading.Thread(target=tick, daemon=True)
    statuses: list[int] = []
    etag = None
    with quiet_stdout():
        ticker.start()
        event = _event(pairs)
        for _ in range(POLLS):
            headers = {**event["headers"], **({"if-none-match": etag} if etag else {})}
            answer = prices.lambda_handler({**event, "headers": headers}, context)
            statuses.append(answer["statusCode"])
            etag = answer["headers"].get("ETag", etag)
            time.sleep(POLL_S)
        stop.set()
        ticker.join(10)
    container.close()
    share = statuses.count(304) / len(statuses)
    return Row(
        SCENARIO,
        f"a client polling every {POLL_S:g} s against {SLOT_MS // 1000} s slots, {POLLS} polls",
        {
            "answers_304": statuses.count(304),
            "answers_200": statuses.count(200),
            "share_304": round(share, 2),
        },
        limit="3 of 4 polls fall in a slot already read",
        target=f">= {TARGET_304_SHARE:.0%} answered 304",
        met=share >= TARGET_304_SHARE,
    )
