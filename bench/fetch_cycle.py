"""Fetch cycle: the production fetcher's tick against the Binance simulator with 50 ms latency.

Each case fills the registry with 10, 100 or 400 pairs, builds the fetcher's collaborators as the
handler does (``build_fetcher``, a new container) and runs real slots (``run_slot``): heartbeat,
claim, registry read, exchangeInfo when due, the ticker batches, jump checks, the cache write and
last known good. A container's first tick also reads exchangeInfo (and, on a new deployment,
writes every pair's last known good), so it is reported apart from the steady ticks after it.
Requests and weight are counted at the simulator, from what it received and charged, not from
the fetcher's own counters.

The limit is what the batching rules allow and nothing else: a tick sends ``batches =
ceil(pairs / batch size)`` requests, at most ``in flight`` at a time, so they need ``rounds =
ceil(batches / in flight)`` round trips of one exchange latency each. No client honouring those
rules fetches faster, so the fetch phase is held to 1.2 x that. The weight a tick must spend under
the same rules is the documented ticker weight of each batch (2 for 1-20 symbols, 40 for 21-100,
80 above), summed; anything more is waste (a retry, a bisection, exchangeInfo every tick).

Beside each case, the same batches fetched by a bare client (stdlib HTTP on kept-alive
connections, no parsing, the same number in flight) show the floor this simulator and machine
allow: the simulator renders each answer under one lock, and every request costs some loopback
and thread switching. What lies between the limit and that floor is not the fetcher's; what lies
above the floor is (its HTTP client, ticker validation, bookkeeping).

A sweep at 400 pairs over batch size and in-flight count shows how the limit moves: more in
flight cuts rounds; bigger batches cut requests and rounds but cost weight per symbol, since a
batch of 21-100 symbols weighs twenty times one of up to 20.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import math
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bench.common import Row, Stack, configure_service, generated_pairs, quiet_stdout, real_parts

LATENCY_MS = 50.0
PAIR_COUNTS = (10, 100, 400)
STEADY_TICKS = 7
TARGET_RATIO = 1.2
# Values inside Settings' validation (batch size 1..100, in flight 1..10); 20 and 3 are the defaults.
DEFAULT_BATCH_SIZE = 20
DEFAULT_IN_FLIGHT = 3
SWEEP_PAIRS = 400
SWEEP_BATCH_SIZES = (20, 50, 100)
SWEEP_IN_FLIGHT = (1, 3, 10)
SWEEP_STEADY_TICKS = 3
BARE_CLIENT_RUNS = 5
REGISTRY_QUERIES = 3
TICKER_PATH = "/api/v3/ticker/24hr"
SCENARIO = "fetch cycle"


# Independent of the fetcher's own ticker_weight on purpose: the limit must not come from the code judged.
def documented_ticker_weight(symbol_count: int) -> int:
    """/api/v3/ticker/24hr with ``symbols``, as shared/DESIGN.md and the fixtures document it."""
    if symbol_count <= 20:
        return 2
    if symbol_count <= 100:
        return 40
    return 80


def exchange_symbol(pair: str) -> str:
    return pair.replace("/", "")  # the simulator's generated symbols: SYM0001/USDT is SYM0001USDT


@dataclass(frozen=True)
class BatchingRules:
    pairs: int
    batch_size: int
    in_flight: int

    @property
    def batch_sizes(self) -> list[int]:
        full, rest = divmod(self.pairs, self.batch_size)
        return [self.batch_size] * full + ([rest] if rest else [])

    @property
    def batches(self) -> int:
        return len(self.batch_sizes)

    @property
    def rounds(self) -> int:
        return math.ceil(self.batches / self.in_flight)

    @property
    def limit_ms(self) -> float:
        return self.rounds * LATENCY_MS

    @property
    def minimal_weight(self) -> int:
        return sum(documented_ticker_weight(size) for size in self.batch_sizes)

    def describe(self) -> str:
        return f"{self.pairs} pairs, batch {self.batch_size}, {self.in_flight} in flight"

    def explain_limit(self) -> str:
        return (
            f"{self.batches} batches / {self.in_flight} = {self.rounds} rounds x {LATENCY_MS:.0f} ms"
            f" = {self.limit_ms:.0f} ms"
        )


@dataclass
class TickFigures:
    """One slot as the fetcher timed it and as the simulator saw it."""

    slot_ms: float  # run_slot, start to end: everything the invocation spends on the slot
    fetch_ms: int  # the tick's own measure of its ticker phase (TickResult.fetch_ms)
    ticker_requests: int
    other_requests: int  # exchangeInfo: due on a container's first tick, then every few minutes
    weight: int  # charged by the simulator for every request of the slot
    pairs_fetched: int


@dataclass
class CaseFigures:
    rules: BatchingRules
    first: TickFigures
    steady: list[TickFigures] = field(default_factory=list)
    bare_client_ms: list[float] = field(default_factory=list)

    def median(self, name: str) -> float:
        return statistics.median(getattr(tick, name) for tick in self.steady)


@dataclass
class Registry:
    table: str
    pairs: list[str]
    seeding_ms: float  # the one-off seeding of an empty registry
    query_ms: float  # the median read of it, as every tick makes one


@contextlib.contextmanager
def observed_tick_results() -> Iterator[list[Any]]:
    """Keep each TickResult that ``run_slot`` produces: the slot only emits it as metrics.

    The production ``run_tick`` still does all the work; it is only wrapped to see its result.
    """
    import fetcher.loop

    results: list[Any] = []
    production_run_tick = fetcher.loop.run_tick

    def run_tick_and_keep(*args: Any, **kwargs: Any) -> Any:
        result = production_run_tick(*args, **kwargs)
        results.append(result)
        return result

    fetcher.loop.run_tick = run_tick_and_keep
    try:
        yield results
    finally:
        fetcher.loop.run_tick = production_run_tick


def point_service_at(stack: Stack, table: str, pairs: list[str], batch_size: int, in_flight: int) -> None:
    configure_service(
        stack,
        pairs,
        MARKET_DATA_TABLE_NAME=table,
        MARKET_DATA_BATCH_SIZE=str(batch_size),
        MARKET_DATA_MAX_CONCURRENT_BATCHES=str(in_flight),
    )


def new_registry(stack: Stack, pair_count: int) -> Registry:
    """A new table whose registry holds ``pair_count`` pairs, and an empty cache: a new deployment.

    An empty registry is seeded by the first tick, once per deployment, with one conditional write
    per pair; it is seeded here with the same function, so the first measured tick is what every
    new container pays rather than the one-off seeding.
    """
    import redis

    from local_stack.servers import create_table_from_template

    table = f"market-data-bench-{uuid.uuid4().hex[:8]}"
    create_table_from_template(stack.dynamodb_url, table)
    with contextlib.closing(redis.Redis.from_url(stack.redis_url)) as client:
        client.flushall()
    pairs = generated_pairs(pair_count)
    point_service_at(stack, table, pairs, DEFAULT_BATCH_SIZE, DEFAULT_IN_FLIGHT)
    # Imported once the environment is set: the service's logger takes its level at import.
    from market_data import store
    from market_data.config import load_settings

    store_table = store.get_table(load_settings())
    started = time.perf_counter()
    store.seed_registry(store_table, pairs, now_ms=time.time_ns() // 1_000_000)
    seeding_ms = (time.perf_counter() - started) * 1000
    query_ms = []
    for _ in range(REGISTRY_QUERIES):
        started = time.perf_counter()
        store.list_registry(store_table)
        query_ms.append((time.perf_counter() - started) * 1000)
    return Registry(table, pairs, seeding_ms, statistics.median(query_ms))


def new_container(stack: Stack, registry: Registry, rules: BatchingRules) -> Any:
    """The fetcher's collaborators for ``rules``, built as the handler builds them."""
    point_service_at(stack, registry.table, registry.pairs, rules.batch_size, rules.in_flight)
    from fetcher.deps import build_fetcher
    from market_data.config import load_settings

    # A case spends at most about 2,500 weight; starting each from zero keeps the fetcher's own
    # weight budget (90 % of 6,000 a minute) from pausing a later case of the run.
    stack.simulator.reset_limits()
    return build_fetcher(load_settings())


def run_one_slot(container: Any, slot: int, results: list[Any], simulator: Any) -> TickFigures:
    from fetcher.loop import LoopSummary, run_slot

    simulator.reset_requests()
    summary = LoopSummary()
    started = time.perf_counter()
    with quiet_stdout():
        run_slot(container, slot, "bench-fetch-cycle", summary)
    slot_ms = (time.perf_counter() - started) * 1000
    requests = simulator.requests
    if summary.ticks != 1 or not results:
        raise RuntimeError(f"slot {slot} did not tick: {summary.as_dict()}")
    result = results.pop()
    if result.errors or result.missing or result.fetch_ms is None:
        raise RuntimeError(f"slot {slot}: errors {result.errors}, missing {list(result.missing)[:5]}")
    tickers = [record for record in requests if record.path == TICKER_PATH]
    return TickFigures(
        slot_ms=slot_ms,
        fetch_ms=result.fetch_ms,
        ticker_requests=len(tickers),
        other_requests=len(requests) - len(tickers),
        weight=sum(record.weight for record in requests),
        pairs_fetched=len(result.tickers),
    )


def bare_client_fetch_ms(base_url: str, pairs: list[str], rules: BatchingRules) -> list[float]:
    """The same batches through kept-alive stdlib connections, ``in flight`` at a time, answers
    read and dropped: what fetching costs here before any client library or validation."""
    address = urlsplit(base_url)
    symbols = [exchange_symbol(pair) for pair in pairs]
    paths = [
        TICKER_PATH
        + "?symbols="
        + json.dumps(symbols[start : start + rules.batch_size], separators=(",", ":"))
        for start in range(0, len(symbols), rules.batch_size)
    ]
    per_thread = threading.local()
    connections: list[http.client.HTTPConnection] = []

    def fetch(path: str) -> None:
        connection = getattr(per_thread, "connection", None)
        if connection is None:
            connection = per_thread.connection = http.client.HTTPConnection(address.netloc)
            connections.append(connection)
        connection.request("GET", path)
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"bare client: HTTP {answer.status}")

    samples = []
    with ThreadPoolExecutor(rules.in_flight) as pool:
        list(pool.map(fetch, paths))  # opens the connections, as the fetcher's are open by now
        for _ in range(BARE_CLIENT_RUNS):
            started = time.perf_counter()
            list(pool.map(fetch, paths))
            samples.append((time.perf_counter() - started) * 1000)
    for connection in connections:
        connection.close()
    return samples


def measure_case(
    stack: Stack, registry: Registry, rules: BatchingRules, steady_ticks: int, slots: Iterator[int]
) -> CaseFigures:
    container = new_container(stack, registry, rules)
    try:
        with observed_tick_results() as results:
            figures = CaseFigures(rules, run_one_slot(container, next(slots), results, stack.simulator))
            for _ in range(steady_ticks):
                figures.steady.append(run_one_slot(container, next(slots), results, stack.simulator))
    finally:
        container.close()  # its kept-alive connections would hold simulator threads
        container.deps.redis.close()
    for tick in (figures.first, *figures.steady):
        if tick.pairs_fetched != rules.pairs:
            raise RuntimeError(f"{rules.describe()}: fetched {tick.pairs_fetched} pairs")
    figures.bare_client_ms = bare_client_fetch_ms(stack.exchange_url, registry.pairs, rules)
    return figures


def steady_row(figures: CaseFigures, *, held_to_target: bool, extra: dict[str, Any] | None = None) -> Row:
    """The steady ticks of one case; ``held_to_target`` for the issue's cases, the sweep only reports."""
    rules = figures.rules
    fetch_p50 = figures.median("fetch_ms")
    weights = sorted({tick.weight for tick in figures.steady})
    requests = sorted({tick.ticker_requests + tick.other_requests for tick in figures.steady})
    bare_p50 = statistics.median(figures.bare_client_ms)
    fits = fetch_p50 <= TARGET_RATIO * rules.limit_ms
    spends_minimal_weight = weights == [rules.minimal_weight]
    one_request_per_batch = requests == [rules.batches]
    target = f"fetch p50 <= {TARGET_RATIO} x limit ({TARGET_RATIO * rules.limit_ms:.0f} ms), weight minimal"
    return Row(
        SCENARIO if held_to_target else f"{SCENARIO} sweep",
        rules.describe(),
        {
            "fetch_p50_ms": round(fetch_p50, 1),
            "fetch_max_ms": max(tick.fetch_ms for tick in figures.steady),
            "fetch_vs_limit": round(fetch_p50 / rules.limit_ms, 2),
            "bare_client_p50_ms": round(bare_p50, 1),
            "tick_p50_ms": round(figures.median("slot_ms"), 1),
            "requests": "/".join(map(str, requests)),
            "weight": "/".join(map(str, weights)),
            "minimal_weight": rules.minimal_weight,
            **(extra or {}),
        },
        limit=rules.explain_limit(),
        target=target if held_to_target else "",
        met=(fits and spends_minimal_weight and one_request_per_batch) if held_to_target else None,
        notes=["weight and requests counted at the simulator; minimal weight from the documented rule"],
    )


def first_tick_row(figures: CaseFigures, registry: Registry) -> Row:
    first, rules = figures.first, figures.rules
    return Row(
        SCENARIO,
        f"{rules.describe()}: first tick",
        {
            "fetch_ms": first.fetch_ms,
            "tick_ms": round(first.slot_ms, 1),
            "ticker_requests": first.ticker_requests,
            "exchange_info_requests": first.other_requests,
            "weight": first.weight,
            "registry_seeding_ms": round(registry.seeding_ms),
        },
        limit=f"{rules.limit_ms:.0f} ms, weight {rules.minimal_weight} + 20 for exchangeInfo",
        notes=[
            "a new deployment's first tick: reads exchangeInfo and writes every pair's last known good; "
            "the registry was seeded before it (one write per pair)"
        ],
    )


def run() -> list[Row]:
    started = time.perf_counter()
    rows: list[Row] = []
    sweep = [
        BatchingRules(SWEEP_PAIRS, size, in_flight)
        for size, in_flight in itertools.product(SWEEP_BATCH_SIZES, SWEEP_IN_FLIGHT)
    ]
    with real_parts(latency_ms=LATENCY_MS, generated_pairs=max(*PAIR_COUNTS, SWEEP_PAIRS)) as stack:
        # The slot number only names the claim (SET NX per slot): numbering slots ahead of the
        # clock gives every tick its own claim without waiting 4 s for the next wall-clock slot.
        slots = itertools.count(int(time.time()) + 1)
        measured: dict[BatchingRules, CaseFigures] = {}
        registry = None
        for pair_count in PAIR_COUNTS:
            rules = BatchingRules(pair_count, DEFAULT_BATCH_SIZE, DEFAULT_IN_FLIGHT)
            print(f"[{SCENARIO}] {rules.describe()}", file=sys.stderr, flush=True)
            registry = new_registry(stack, pair_count)
            measured[rules] = figures = measure_case(stack, registry, rules, STEADY_TICKS, slots)
            rows.append(first_tick_row(figures, registry))
            # Every tick reads the registry; on moto that Query is much of the tick beyond the fetch.
            registry_read = {"registry_query_ms": round(registry.query_ms)}
            rows.append(steady_row(figures, held_to_target=True, extra=registry_read))
        if registry is None or len(registry.pairs) != SWEEP_PAIRS:
            raise RuntimeError(f"the sweep needs the {SWEEP_PAIRS}-pair registry measured last")
        # The sweep reuses the 400-pair registry and the cache: each case is a new container of
        # the same deployment, so its first tick reads exchangeInfo but writes nothing extra.
        for rules in sweep:
            if rules not in measured:
                print(f"[{SCENARIO}] sweep: {rules.describe()}", file=sys.stderr, flush=True)
                measured[rules] = measure_case(stack, registry, rules, SWEEP_STEADY_TICKS, slots)
            rows.append(steady_row(measured[rules], held_to_target=False))
    print(f"[{SCENARIO}] {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return rows
