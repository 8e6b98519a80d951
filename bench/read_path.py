"""The prices handler, invoked with real API Gateway events, against a raw HMGET of the same fields.

The handler is the production one, imported from its directory; the cache was filled by a real
fetcher tick. The raw HMGET reads the same pairs' tickers with the same client library: it is the
floor any reader pays (one round trip, one reply to parse). The two are timed alternately, call
by call, so both see the same machine.
"""

from __future__ import annotations

import copy
import functools
import time
import urllib.parse
from typing import Any

from bench.common import Row, configure_service, generated_pairs, percentile, quiet_stdout, real_parts

PAIR_COUNTS = (1, 10, 100)
TARGET_RATIO_AT_10 = 2.0


def _event(pairs: list[str]) -> dict[str, Any]:
    from tests.support import load_event

    event = copy.deepcopy(load_event("prices_get.json"))
    value = ",".join(pairs)
    event["queryStringParameters"] = {"pairs": value}
    event["rawQueryString"] = "pairs=" + urllib.parse.quote(value, safe=",/")
    return event


def _fill_cache(pairs: list[str]) -> None:
    from fetcher.deps import build_fetcher
    from fetcher.loop import LoopSummary, run_slot
    from market_data.clock import now_ms
    from market_data.config import load_settings

    container = build_fetcher(load_settings())
    run_slot(container, now_ms() // container.deps.settings.fetch_interval_ms, "bench", LoopSummary())
    from market_data import cache

    listed = len(cache.read_prices(container.deps.redis, None).listed)
    if listed < len(pairs):
        raise RuntimeError(f"the tick listed {listed} of {len(pairs)} pairs")


def _time_interleaved(first: Any, second: Any, iterations: int) -> tuple[list[float], list[float]]:
    """Both calls timed alternately, so that both see the same machine: timed one block after the
    other, a shift in CPU speed or steal time between the blocks moved the ratio by 30 %."""
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(iterations):
        for call, kept in ((first, samples[0]), (second, samples[1])):
            started = time.perf_counter_ns()
            call()
            kept.append((time.perf_counter_ns() - started) / 1000)
    return samples


def run(iterations: int = 3000) -> list[Row]:
    rows = []
    with real_parts(generated_pairs=max(PAIR_COUNTS)) as stack:
        all_pairs = generated_pairs(max(PAIR_COUNTS))
        configure_service(stack, all_pairs, MARKET_DATA_BATCH_SIZE="100")
        import redis

        import prices_api.handler as prices
        from local_stack.lambda_context import LocalLambdaContext
        from market_data import cache

        context = LocalLambdaContext("PricesApiFunction", 6)
        raw = redis.Redis.from_url(stack.redis_url)
        for count in PAIR_COUNTS:
            pairs = all_pairs[:count]
            with quiet_stdout():
                _fill_cache(all_pairs)  # every case reads a fresh tick
            event = _event(pairs)
            answer = prices.lambda_handler(event, context)
            copies: list[bytes | None] = raw.hmget(cache.STALE_COPIES, pairs)  # type: ignore[assignment]
            if answer["statusCode"] != 200 or None in copies:
                raise RuntimeError(f"{count} pairs: handler {answer['statusCode']}, or tickers missing")
            invoke = functools.partial(prices.lambda_handler, event, context)
            read_raw = functools.partial(raw.hmget, cache.STALE_COPIES, pairs)
            with quiet_stdout():
                _time_interleaved(invoke, read_raw, iterations // 5)  # warm: connections, caches
                handler, mget = _time_interleaved(invoke, read_raw, iterations)  # HMGET, as "mget"
            h50, m50 = percentile(handler, 0.5), percentile(mget, 0.5)
            ratio = h50 / m50
            rows.append(
                Row(
                    "read path",
                    f"{count} pairs",
                    {
                        "handler_p50_us": round(h50, 1),
                        "handler_p99_us": round(percentile(handler, 0.99), 1),
                        "mget_p50_us": round(m50, 1),
                        "mget_p99_us": round(percentile(mget, 0.99), 1),
                        "ratio_p50": round(ratio, 2),
                        "overhead_p50_us": round(h50 - m50, 1),
                    },
                    limit=f"raw HMGET p50 {m50:.0f} us",
                    target=f"p50 <= {TARGET_RATIO_AT_10} x HMGET" if count == 10 else "",
                    met=ratio <= TARGET_RATIO_AT_10 if count == 10 else None,
                )
            )
        rows.append(_health_row(stack.redis_url, prices, context, raw))
        raw.close()
    return rows


HEALTH_REQUESTS = 50


def _health_row(redis_url: str, prices: Any, context: Any, raw: Any) -> Row:
    """Cache bytes a health request costs: computed (it reads every latency sample of two minutes,
    here those of the reads above), and shared (every other request of the slot: one GET)."""
    from bench.cost.measure import CacheWire
    from market_data.cache.keys import SHARED_HEALTH
    from tests.support import load_event

    wire, event = CacheWire(redis_url), load_event("health_get.json")
    with quiet_stdout():
        raw.delete(SHARED_HEALTH)  # the slot's first request: computed
        before = wire.snapshot()
        first = prices.lambda_handler(event, context)
        computed = wire.since(before)
        before = wire.snapshot()
        for _ in range(HEALTH_REQUESTS):
            prices.lambda_handler(event, context)
        shared = wire.since(before)
    if first["statusCode"] != 200:
        raise RuntimeError(f"health answered {first['statusCode']}")
    return Row(
        "read path",
        "health (100 pairs, the reads above in its window)",
        {
            "computed_cache_bytes": computed.bytes,
            "computed_commands": computed.commands,
            "shared_cache_bytes_per_request": round(shared.bytes / HEALTH_REQUESTS),
            "body_bytes": len(first["body"]),
        },
        limit="computed once per slot, shared by every container",
        target="",
        met=None,
    )
