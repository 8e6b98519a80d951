"""The cache's processing cap against the API's route throttle: at the throttle's burst, reads of
the design's 20 pairs must fit under the cap, or the cache throttles and every client gets stale
prices. ElastiCache Serverless bills a simple command 1 ECPU per kilobyte it transfers; the bytes
here are measured on a real redis-server, from the server's own counters."""

from __future__ import annotations

import math

import orjson

from bench.cost.measure import CacheWire
from local_stack.lambda_context import LocalLambdaContext
from local_stack.template import load_template
from market_data import cache
from market_data.clock import now_ms
from market_data.config import get_settings
from market_data.contracts import TickStats
from market_data.models import Ticker
from prices_api.handler import lambda_handler
from tests.support import load_event

DESIGN_PAIRS = 20  # source design 002's price list, and the cost model's case


def _ticker(pair: str) -> Ticker:
    at = now_ms()
    base, quote = pair.split("/")
    return Ticker(
        pair=pair, price=64_123.45, volume=12_345.678, quoteVolume=791_234_567.89, timestamp=at,
        fetchedAt=at + 40, change24h=-1.25, high24h=65_000.1, low24h=63_000.2, exchange="binance",
        symbol=base + quote,
    )  # fmt: skip


def _parameter(name: str) -> float:
    return float(load_template()["Parameters"][name]["Default"])


def test_reads_at_the_route_throttles_burst_fit_under_the_caches_ecpu_cap(
    service_env: dict[str, str], redis_server: object
) -> None:
    pairs = [f"C{i:02d}/USDT" for i in range(DESIGN_PAIRS)]
    client = cache.get_client(get_settings())
    client.flushall()
    cache.write_tick(
        client,
        cache.TickWrite(
            slot=now_ms() // 4000,
            tickers={pair: orjson.dumps(_ticker(pair).model_dump()) for pair in pairs},
            listed=pairs,
            unlisted_copies=[],
            stats=TickStats(),
        ),
    )
    event = load_event("prices_all.json")
    context = LocalLambdaContext("PricesApiFunction", 6)
    assert lambda_handler(event, context)["statusCode"] == 200  # warm: the connection is open

    wire = CacheWire(service_env["REDIS_URL"])
    try:
        reads = 50
        before = wire.snapshot()
        for _ in range(reads):
            assert lambda_handler(event, context)["statusCode"] == 200
        measured = wire.since(before)
    finally:
        wire.close()

    bytes_per_read = measured.bytes / reads
    ecpu_per_read = max(1, math.ceil(bytes_per_read / 1024))
    burst = _parameter("ApiThrottlingBurstLimit")
    cap = _parameter("CacheMaxEcpuPerSecond")
    needed = burst * ecpu_per_read
    assert needed <= cap * 0.9, (  # the rest for the fetcher and health
        f"{burst:g} reads/s x {ecpu_per_read} ECPU ({bytes_per_read:.0f} bytes) = {needed:g} ECPU/s "
        f"against a cap of {cap:g}"
    )
