"""Write cost: DynamoDB writes per pair per hour while the fetcher runs in steady state.

DynamoDB on demand bills every item written, so the durable last-known-good copy must not be
written on every tick: at most once per pair per LAST_KNOWN_GOOD_WRITE_INTERVAL_MS (60 s by
default), hence the limit of 60 writes per pair per hour, whatever the tick rate.

What is measured: the production fetcher (``build_fetcher`` and ``run_slot``, as the loop calls them)
against a redis-server, moto over HTTP and the Binance simulator, for one simulated hour of
consecutive slots after a minute of warm-up (the first tick seeds the registry and writes every
pair once). Writes are counted on the wire, by a hook on the fetcher's own DynamoDB client that
reads each request body: items in PutItem, UpdateItem, DeleteItem, BatchWriteItem and
TransactWriteItems, by item family (the partition key: LKG, PAIR, STATE, ...), not the code's own
counters. Reads are counted beside them, as requests.

Simulated time: the loop and the tick read the clock through ``now_ms`` in their own modules, so
substituting a clock there runs 900 slots of 4 s in about a minute without changing the
service. The clock jumps to each slot's start and runs in real time within the slot, so ticks take
as long as they really do; the last-known-good bookkeeping (in the cache) sees simulated times.
A write falls due at the first tick at least 60 s after the previous one; with ticks every 4 s
and a few milliseconds of jitter in when they finish, that is every 60 or 64 s: between 56 and
60 writes per pair per hour. Prices still come from the simulator, whose own clock is real.

The simulator counts request weight per real minute, as Binance does; an hour of ticks squeezed
into a minute would spend an hour's weight in one real minute, so its count is restarted at every
simulated minute, where Binance would restart it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from bench.common import Row, configure_service, generated_pairs, quiet_stdout, real_parts

PAIR_COUNT = 30  # two ticker batches and two BatchWriteItem requests (25 items each at most)
WARM_UP_SLOTS = 15  # one simulated minute: the registry is seeded, every pair written once
MEASURED_MINUTES = 60
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
SLOT_START_LAG_MS = 1  # the loop wakes just after the slot boundary, never before it
LAST_KNOWN_GOOD_FAMILY = "LKG"
WRITE_OPERATIONS = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
READ_OPERATIONS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"}
TRANSACT_WRITE_KINDS = ("Put", "Update", "Delete")  # ConditionCheck writes nothing


class SimulatedClock:
    """Epoch milliseconds that jump to each slot's start and then run in real time."""

    def __init__(self) -> None:
        self._offset_ms = 0

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self._offset_ms

    def enter_slot(self, slot: int, interval_ms: int) -> None:
        self._offset_ms = slot * interval_ms + SLOT_START_LAG_MS - time.time_ns() // 1_000_000


@dataclass
class WireCounter:
    """DynamoDB requests as the fetcher's client sends them: written items by family, reads."""

    measuring: bool = False  # False during warm-up: those writes go to ``startup``
    items: Counter[str] = field(default_factory=Counter)  # family -> items written
    write_requests: Counter[str] = field(default_factory=Counter)  # operation -> requests
    reads: Counter[str] = field(default_factory=Counter)  # operation -> requests
    startup: Counter[str] = field(default_factory=Counter)  # family -> items written in warm-up

    def on_call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        """botocore ``before-call`` hook; returning anything but None would replace the call."""
        operation = model.name
        if operation in READ_OPERATIONS:
            if self.measuring:
                self.reads[operation] += 1
            return
        if operation not in WRITE_OPERATIONS:
            return
        body = json.loads(params.get("body") or b"{}")
        families = _written_families(operation, body)
        if self.measuring:
            self.write_requests[operation] += 1
            self.items.update(families)
        else:
            self.startup.update(families)


def _family(key_or_item: dict[str, Any]) -> str:
    return str(key_or_item["pk"]["S"])


def _written_families(operation: str, body: dict[str, Any]) -> list[str]:
    """The partition key of every item a write request puts, updates or deletes."""
    if operation == "PutItem":
        return [_family(body["Item"])]
    if operation in ("UpdateItem", "DeleteItem"):
        return [_family(body["Key"])]
    if operation == "BatchWriteItem":
        families = []
        for requests in body["RequestItems"].values():
            for request in requests:
                if "PutRequest" in request:
                    families.append(_family(request["PutRequest"]["Item"]))
                else:
                    families.append(_family(request["DeleteRequest"]["Key"]))
        return families
    families = []
    for action in body["TransactItems"]:
        for kind in TRANSACT_WRITE_KINDS:
            if kind in action:
                spec = action[kind]
                families.append(_family(spec.get("Item") or spec["Key"]))
    return families


@contextlib.contextmanager
def _simulated_time(clock: SimulatedClock) -> Iterator[None]:
    """Every tick phase that reads the clock reads the simulated one (the exchanges keep the real
    one: the simulator's ticker times are real)."""
    import sys

    import fetcher.loop  # noqa: F401  # loads the tick's phases

    readers = [
        module
        for name, module in sys.modules.items()
        if name.startswith("fetcher.")
        and not name.startswith("fetcher.exchanges")
        and hasattr(module, "now_ms")
    ]
    with contextlib.ExitStack() as patches:
        for module in readers:
            patches.enter_context(mock.patch.object(module, "now_ms", clock.now_ms))
        yield


def _check_clock_reached_the_fetcher(container: Any, simulated_end_ms: int) -> None:
    """Had the fetcher kept reading the real clock, it would have written about once a real
    minute, and the figure would look far better than it is: the write times it kept say which
    clock it read."""
    from market_data import cache

    written = [int(at) for at in container.deps.redis.hgetall(cache.LKG_WRITTEN).values()]
    latest_due = simulated_end_ms - 2 * container.deps.settings.last_known_good_write_interval_ms
    if not written or max(written) < latest_due:
        raise RuntimeError(
            "the fetcher did not run on the simulated clock: its last-known-good times are real"
        )


def run() -> list[Row]:
    with real_parts(generated_pairs=PAIR_COUNT) as stack:
        pairs = generated_pairs(PAIR_COUNT)
        configure_service(stack, pairs)
        from fetcher.deps import build_fetcher
        from fetcher.loop import LoopSummary, run_slot
        from market_data.config import load_settings

        container = build_fetcher(load_settings())
        settings = container.deps.settings
        interval = settings.fetch_interval_ms
        slots_per_minute = MINUTE_MS // interval
        measured_slots = MEASURED_MINUTES * slots_per_minute
        counter, clock = WireCounter(), SimulatedClock()
        events = container.deps.table.meta.client.meta.events
        events.register("before-call.dynamodb", counter.on_call)
        warm_up, measured = LoopSummary(), LoopSummary()
        first_slot = time.time_ns() // 1_000_000 // interval
        started = time.monotonic()
        try:
            with _simulated_time(clock), quiet_stdout():
                for index in range(WARM_UP_SLOTS + measured_slots):
                    slot = first_slot + index
                    if index == WARM_UP_SLOTS:
                        counter.measuring = True
                    if index % slots_per_minute == 0:
                        stack.simulator.reset_limits()  # a new simulated minute of weight
                    clock.enter_slot(slot, interval)
                    summary = measured if counter.measuring else warm_up
                    run_slot(container, slot, "bench-write-cost", summary)
            _check_clock_reached_the_fetcher(
                container, (first_slot + WARM_UP_SLOTS + measured_slots) * interval
            )
        finally:
            events.unregister("before-call.dynamodb", counter.on_call)
            container.deps.executor.shutdown()
        elapsed_s = time.monotonic() - started

    hours = measured_slots * interval / HOUR_MS
    lkg_items = counter.items[LAST_KNOWN_GOOD_FAMILY]
    lkg_per_pair_hour = lkg_items / PAIR_COUNT / hours
    limit_per_hour = HOUR_MS / settings.last_known_good_write_interval_ms
    other = {family: count for family, count in counter.items.items() if family != LAST_KNOWN_GOOD_FAMILY}
    case = f"{PAIR_COUNT} pairs, {MEASURED_MINUTES} simulated min of {interval} ms slots"
    ticks = {
        "ticks": measured.ticks,
        "failed_ticks": measured.failed,
        "paused_ticks": measured.paused,
        "real_s": round(elapsed_s, 1),
    }
    return [
        Row(
            "write cost",
            f"last-known-good writes, {case}",
            {
                "lkg_writes_per_pair_per_hour": round(lkg_per_pair_hour, 1),
                "lkg_items_per_hour": round(lkg_items / hours),
                "batch_write_requests_per_hour": round(counter.write_requests["BatchWriteItem"] / hours),
                **ticks,
            },
            limit=f"one per pair per {settings.last_known_good_write_interval_ms / 1000:.0f} s "
            f"= {limit_per_hour:.0f} per pair per hour",
            target=f"<= {limit_per_hour:.0f} per pair per hour",
            # A failed tick writes nothing: fewer writes would then flatter the figure.
            met=lkg_per_pair_hour <= limit_per_hour and measured.ticks == measured_slots,
        ),
        Row(
            "write cost",
            "other DynamoDB traffic of the fetcher, same hour",
            {
                "other_writes_per_hour": round(sum(other.values()) / hours),
                **{
                    f"{family.lower()}_writes_per_hour": round(n / hours)
                    for family, n in sorted(other.items())
                },
                **{f"warm_up_{family.lower()}_writes": n for family, n in sorted(counter.startup.items())},
                **{
                    f"{operation.lower()}_requests_per_hour": round(n / hours)
                    for operation, n in sorted(counter.reads.items())
                },
            },
            limit="none: heartbeat, claims and ban go to the cache while it is up",
        ),
    ]
