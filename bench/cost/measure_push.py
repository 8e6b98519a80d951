"""Measuring push: the broadcaster's time per slot as connections grow, the capacity of one
invocation, the connection registry's cost per slot both ways, and every per-message, per-post and
per-connection figure ``bench.cost.push_model`` prices.

Set-up: a redis-server, moto in a process of its own with the template's table, the Binance
simulator with 20 pairs, and bench/standin.py, a process answering the management API's posts
(with API Gateway's headers, no WebSocket behind an id) and Lambda's Invoke API (payloads kept).
A fetcher built as the handler builds it ticks real slots; its tick consumer is the production
``SlotBroadcast`` with a starter that keeps the payload, and the production broadcaster handler is
called with it in this process, then with every split payload the stand-in received, one after the
other (on AWS they run side by side: the sum is what Lambda bills, the largest what a client waits).

Connections: 100 registered by the production stream function (``$connect``, then a subscribe to
three pairs, each timed: billed ms, DynamoDB reads and writes, the snapshot's bytes; 100 more
connect, subscribe and disconnect), the rest written straight into the table in the same item
shape, up to 1,000, 5,000 and 10,000. The registry Query is answered by moto once per registry and
then from its own bytes (bench/push_parts.py: QueryReplay), so moto's 0.8 ms per item is not timed.

Per slot: wall time and CPU time (every thread of this process: the stand-in, moto and redis are
other processes) of each invocation and of its Query, decision and fan-out; DynamoDB operations
and the Query's bytes; the cache's bytes and commands; the posts by message type with their HTTP
bytes as they go on the wire; the metric documents printed.

Capacity: at 1,000 connections the stand-in answers each post after 20 ms (an assumed round trip
to API Gateway), at 8, 16 and 64 posts in flight; beside it the SDK's own client
(``apigatewaymanagementapi``, 16 threads) shows what the Poster saves per post.

Registry both ways, at 1,000 and 10,000 connections: the Query's bytes (JSON, as DynamoDB sends
it) and the items' own size (what DynamoDB bills), against the same data as one cache hash read
with HGETALL (bytes from the redis-server's own counters, bench/cost/measure.py's CacheWire).

One measurement per process: the stream scenario's rows and the cost scenario's push lines come
from the same figures when both run (``measure_push`` keeps its result). It runs past 300 lines
because every figure needs its own probe (DynamoDB's operations, the cache's counters, the posts'
bytes, the phases of an invocation, the stream function's events) and all of them are taken in the
one run that registers the connections once.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from statistics import fmean
from typing import Any

from bench.common import REPO_ROOT, Stack, generated_pairs, quiet_stdout, real_parts
from bench.cost.measure import CONTEXT_VARIABLE, CacheWire, WireSnapshot, captured_stdout
from bench.cost.model import LAMBDA_PLATFORM_LOG_BYTES
from bench.cost.push_model import BroadcastTick, PushFigures
from bench.push_parts import (
    BROADCASTER,
    QueryReplay,
    SdkWire,
    StandIn,
    prime_registry_query,
    push_environment,
    reset_push_clients,
    standin,
    watching_poster,
)

PAIRS = 20  # the cost model's default case
PAIRS_PER_CLIENT = 3
SCALING_CONNECTIONS = (100, 1_000, 5_000, 10_000)
SCALING_TICKS = {100: 3, 1_000: 3, 5_000: 2, 10_000: 2}
REGISTRY_CONNECTIONS = (1_000, 10_000)
CAPACITY_CONNECTIONS = 1_000
CAPACITY_LATENCY_MS = 20.0  # assumed: a post's round trip from Lambda to API Gateway's management API
CAPACITY_CONCURRENCY = (16, 48, 64)
CAPACITY_TICKS = 2
SDK_POSTS = 2_000
LIFETIMES_MEASURED = 100  # connect + subscribe + disconnect, timed
CONNECTIONS_BY_STREAM_FUNCTION = 100  # connect + subscribe, kept as the registry's first items
DEFAULT_CONCURRENCY = 48  # config.py's BROADCAST_CONCURRENCY default: checked against the settings
FIXTURES = REPO_ROOT / "tests" / "fixtures_ws"


# --- probes --------------------------------------------------------------------------------------
@dataclass
class DynamoOps:
    """The functions' DynamoDB calls on their client: operations (reads split by consistency, batch
    writes by items) and the bytes of every Query answer."""

    ops: Counter[str] = field(default_factory=Counter)
    query_bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def before_call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        body = json.loads(params.get("body") or b"{}")
        name = model.name
        if name in ("GetItem", "Query") and body.get("ConsistentRead"):
            name += " consistent"
        with self._lock:
            if name == "BatchWriteItem":
                self.ops[name] += sum(len(requests) for requests in body["RequestItems"].values())
            else:
                self.ops[name] += 1

    def after_call(self, http_response: Any, model: Any, **_: Any) -> None:
        if model.name == "Query":
            with self._lock:
                self.query_bytes += len(http_response.content)

    def take(self) -> tuple[Counter[str], int]:
        with self._lock:
            taken = (self.ops, self.query_bytes)
            self.ops, self.query_bytes = Counter(), 0
        return taken

    @contextlib.contextmanager
    def watching(self, table: Any) -> Iterator[DynamoOps]:
        events = table.meta.client.meta.events
        events.register("before-call.dynamodb", self.before_call)
        events.register("after-call.dynamodb", self.after_call)
        try:
            yield self
        finally:
            events.unregister("before-call.dynamodb", self.before_call)
            events.unregister("after-call.dynamodb", self.after_call)


@dataclass
class Phases:
    """The last invocation's registry Query, decision and fan-out: wall ms and CPU ms."""

    query_ms: float = 0.0
    query_cpu_ms: float = 0.0  # the handler's own thread: receiving, parsing, deserialising
    decide_ms: float = 0.0
    fanout_ms: float = 0.0
    fanout_cpu_ms: float = 0.0  # every thread of the process: the posting pool's
    sent: int = 0

    @contextlib.contextmanager
    def watching(self) -> Iterator[Phases]:
        from unittest import mock

        import broadcaster.handler as handler
        from market_data import store

        list_connections, decide, post_all = store.list_connections, handler.decide, handler.post_all

        def timed_query(*args: Any, **kwargs: Any) -> Any:
            started, cpu = time.perf_counter(), time.thread_time()
            found = list_connections(*args, **kwargs)
            self.query_ms = (time.perf_counter() - started) * 1000
            self.query_cpu_ms = (time.thread_time() - cpu) * 1000
            return found

        def timed_decide(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            decision = decide(*args, **kwargs)
            self.decide_ms = (time.perf_counter() - started) * 1000
            return decision

        def timed_post_all(*args: Any, **kwargs: Any) -> Any:
            started, cpu = time.perf_counter(), own_cpu_s()
            result = post_all(*args, **kwargs)
            self.fanout_ms = (time.perf_counter() - started) * 1000
            self.fanout_cpu_ms = (own_cpu_s() - cpu) * 1000
            self.sent = result.sent
            return result

        with (
            mock.patch.object(store, "list_connections", timed_query),
            mock.patch.object(handler, "decide", timed_decide),
            mock.patch.object(handler, "post_all", timed_post_all),
        ):
            yield self


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class PosterProbe:
    """An SdkWire on the Poster the functions post with and on the broadcaster's starter. Both are
    made again whenever the settings change, so the probe is attached again with them."""

    def __init__(self) -> None:
        self.wire = SdkWire()
        self._attached: contextlib.ExitStack | None = None

    def attach(self, settings: Any) -> None:
        from market_data import push

        self.detach()
        self._attached = contextlib.ExitStack()
        self._attached.enter_context(watching_poster(push.get_poster(settings), self.wire))
        starter = push.get_broadcast_starter(settings)
        if starter is not None:  # the splits' Invokes (their payloads carry their connections)
            self._attached.enter_context(self.wire.watching(starter._client))

    def detach(self) -> None:
        if self._attached is not None:
            self._attached.close()
            self._attached = None


class KeptPayloads:
    """The starter ``SlotBroadcast`` is given: keeps each slot's payload instead of invoking."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def start(self, payload: dict[str, Any]) -> None:
        self.payloads.append(payload)


# --- what one invocation and one slot did --------------------------------------------------------
@dataclass(frozen=True)
class Invocation:
    shard: int
    shards: int
    connections: int  # its share
    wall_ms: float
    cpu_ms: float
    phases: Phases
    ops: Counter[str]
    query_bytes: int
    cache: WireSnapshot
    emf_bytes: int


@dataclass(frozen=True)
class SlotRun:
    connections: int
    invocations: list[Invocation]
    posts: SdkWire

    @property
    def wall_ms(self) -> float:
        return sum(invocation.wall_ms for invocation in self.invocations)

    @property
    def longest_ms(self) -> float:
        return max(invocation.wall_ms for invocation in self.invocations)

    @property
    def cpu_ms(self) -> float:
        return sum(invocation.cpu_ms for invocation in self.invocations)

    @property
    def sent(self) -> int:
        return sum(invocation.phases.sent for invocation in self.invocations)

    @property
    def fanout_s(self) -> float:
        return sum(invocation.phases.fanout_ms for invocation in self.invocations) / 1000


@dataclass(frozen=True)
class Capacity:
    case: str
    concurrency: int
    latency_ms: float
    posts: int
    seconds: float
    cpu_s: float

    @property
    def posts_per_s(self) -> float:
        return self.posts / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_post(self) -> float:
        return self.cpu_s * 1000 / self.posts if self.posts else 0.0


@dataclass(frozen=True)
class RegistryBothWays:
    connections: int
    query_json_bytes: int
    query_pages: int
    moto_ms: float
    item_bytes: int  # DynamoDB's size of every connection item read
    hash_reply_bytes: int  # HGETALL of the same data, request + reply on the cache's wire
    hash_commands: int
    hash_memory_bytes: int


@dataclass(frozen=True)
class StreamLifetime:
    """One connection's life through the stream function: each event's billed ms, DynamoDB
    operations, printed bytes."""

    billed_ms: dict[str, float]
    p50_ms: dict[str, float]
    ops: dict[str, Counter[str]]
    printed_bytes: dict[str, float]
    snapshot_bytes: float
    access_log_bytes: float  # the three route calls' lines


@dataclass
class PushMeasurement:
    slots: dict[int, list[SlotRun]]
    capacity: list[Capacity]
    sdk: list[Capacity]
    registry: dict[int, RegistryBothWays]
    lifetime: StreamLifetime
    figures: PushFigures
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


# --- the measurement -----------------------------------------------------------------------------
_kept: PushMeasurement | None = None


def measure_push() -> PushMeasurement:
    """The figures, measured once per process (the stream and cost scenarios share them)."""
    global _kept
    if _kept is None:
        _kept = _Measurement().run()
    return _kept


class _Measurement:
    def __init__(self) -> None:
        self.pairs = generated_pairs(PAIRS)
        self.items: list[dict[str, Any]] = []  # every registered connection item, in order
        self.replay = QueryReplay()
        self.dynamo = DynamoOps()
        self.poster = PosterProbe()
        self.phases = Phases()
        self.kept = KeptPayloads()
        self.notes: list[str] = []

    def run(self) -> PushMeasurement:
        started = time.perf_counter()
        with (
            real_parts(generated_pairs=PAIRS, moto_process=True) as stack,
            standin() as stand,
            push_environment(stack, self.pairs, stand.url),
            quiet_stdout(),
        ):
            measurement = self._measure(stack, stand)
        measurement.seconds = time.perf_counter() - started
        return measurement

    def _measure(self, stack: Stack, stand: StandIn) -> PushMeasurement:
        from fetcher.broadcasting import SlotBroadcast
        from fetcher.deps import build_fetcher
        from fetcher.loop import LoopSummary
        from market_data import store
        from market_data.clock import now_ms
        from market_data.config import get_settings, load_settings

        self.stand = stand
        fetcher_settings = load_settings()  # no broadcaster named: the fetcher starts none itself
        self.fetcher = build_fetcher(fetcher_settings)
        broadcast = SlotBroadcast(fetcher_settings, self.kept)  # type: ignore[arg-type]
        self.fetcher.deps.consumers.append(broadcast)
        self.fetcher.deps.closers.append(broadcast.close)
        self.broadcast = broadcast
        os.environ["BROADCASTER_FUNCTION_NAME"] = BROADCASTER  # the broadcaster's splits reach the stand-in
        reset_push_clients()
        self.settings = get_settings()
        if self.settings.broadcast_concurrency != DEFAULT_CONCURRENCY:
            self.notes.append(
                f"BROADCAST_CONCURRENCY is {self.settings.broadcast_concurrency} in this environment"
            )
        self.interval = self.settings.fetch_interval_ms
        self.summary = LoopSummary()
        self.slots = iter(range(now_ms() // self.interval + 2, now_ms() // self.interval + 10_000))
        self.cache_wire = CacheWire(stack.redis_url)
        table = store.get_table(self.settings)
        slot_runs: dict[int, list[SlotRun]] = {}
        capacity: list[Capacity] = []
        registry: dict[int, RegistryBothWays] = {}
        try:
            with self.replay.watching(table), self.dynamo.watching(table), self.phases.watching():
                self.poster.attach(self.settings)
                self._slot(0)  # a new deployment's first slot; the handlers' first (cold) calls
                lifetime = self._lifetimes()
                invoke_bytes = self._invoke_request_bytes()
                for count in SCALING_CONNECTIONS:
                    self._register_up_to(count)
                    pages_before = len(self.replay.moto_ms)
                    prime_registry_query(self.settings, self.replay)
                    if count in REGISTRY_CONNECTIONS:
                        registry[count] = self._both_ways(count, self.replay.moto_ms[pages_before:], stack)
                    slot_runs[count] = [self._slot(count) for _ in range(SCALING_TICKS[count])]
                    if count == CAPACITY_CONNECTIONS:
                        capacity = self._capacity(count)
                sdk = self._sdk(stand)
        finally:
            self.poster.detach()
            self.cache_wire.close()
            self.fetcher.close()
        figures = self._figures(slot_runs, lifetime, invoke_bytes)
        if self.summary.failed:
            self.notes.append(f"fetcher slots failed: {self.summary.as_dict()}")
        settings = {
            "concurrency": self.settings.broadcast_concurrency,
            "per_invocation": self.settings.broadcast_connections_per_invocation,
            "fetch_interval_ms": self.interval,
        }
        return PushMeasurement(slot_runs, capacity, sdk, registry, lifetime, figures, settings, self.notes)

    # --- one slot: the fetcher's tick, then the broadcaster and its splits -----------------------
    def _slot(self, connections: int) -> SlotRun:
        from fetcher.loop import run_slot

        run_slot(self.fetcher, next(self.slots), "bench-push", self.summary)
        self.broadcast.sender.submit(lambda: None).result()  # the consumer has handed its payload over
        payload = self.kept.payloads.pop()
        self.stand.recorded()
        self.poster.wire.take()
        invocations = [self._invoke(payload)]
        for split in self.stand.recorded()["invocations"]:
            invocations.append(self._invoke(split))
        return SlotRun(connections, invocations, self.poster.wire.take())

    def _invoke(self, payload: dict[str, Any]) -> Invocation:
        import broadcaster.handler as handler
        from local_stack.lambda_context import LocalLambdaContext

        context = LocalLambdaContext(BROADCASTER, 30)
        self.dynamo.take()
        self.phases.sent = 0
        cache_before, cpu_before, started = self.cache_wire.snapshot(), own_cpu_s(), time.perf_counter()
        with captured_stdout() as printed:
            result = handler.lambda_handler(payload, context)
        wall_ms = (time.perf_counter() - started) * 1000
        cpu_ms = (own_cpu_s() - cpu_before) * 1000
        cache = self.cache_wire.since(cache_before)
        if result.get("error"):
            raise RuntimeError(f"the broadcaster failed: {result}")
        ops, query_bytes = self.dynamo.take()
        phases = Phases(**{name: getattr(self.phases, name) for name in Phases.__dataclass_fields__})
        return Invocation(
            int(result["shard"]), int(result["shards"]), int(result["connections"]), wall_ms, cpu_ms,
            phases, ops, query_bytes, cache, len(printed.getvalue().encode()),
        )  # fmt: skip

    # --- the stream function: connections' lives ----------------------------------------------------
    def _event(self, name: str, connection_id: str, connected_at: int, **context: Any) -> dict[str, Any]:
        event: dict[str, Any] = json.loads((FIXTURES / f"apiGatewayWebSocketApi{name}.json").read_text())
        event["requestContext"].update(
            connectionId=connection_id, connectedAt=connected_at, stage="live", **context
        )
        return event

    def _lifetimes(self) -> StreamLifetime:
        import stream.handler as handler
        from local_stack.lambda_context import LocalLambdaContext
        from local_stack.websocket import aws_id
        from market_data.clock import now_ms

        durations: dict[str, list[float]] = {"connect": [], "subscribe": [], "disconnect": []}
        ops: dict[str, Counter[str]] = {kind: Counter() for kind in durations}
        printed_bytes: dict[str, int] = dict.fromkeys(durations, 0)
        kept: list[str] = []
        self.poster.wire.take()

        def call(kind: str, event: dict[str, Any]) -> None:
            context = LocalLambdaContext("StreamFunction", 10)
            self.dynamo.take()
            started = time.perf_counter()
            with captured_stdout() as printed:
                answer = handler.lambda_handler(event, context)
            durations[kind].append((time.perf_counter() - started) * 1000)
            if answer.get("statusCode") != 200:
                raise RuntimeError(f"the stream function answered {answer} to {kind}")
            ops[kind].update(self.dynamo.take()[0])
            printed_bytes[kind] += len(printed.getvalue().encode())

        for index in range(LIFETIMES_MEASURED + CONNECTIONS_BY_STREAM_FUNCTION):
            connection_id, connected_at = aws_id(), now_ms()
            pairs = [self.pairs[(index + k) % len(self.pairs)] for k in range(PAIRS_PER_CLIENT)]
            call("connect", self._event("Connect", connection_id, connected_at))
            message = self._event("Message", connection_id, connected_at, routeKey="$default")
            message["body"] = json.dumps({"action": "subscribe", "pairs": pairs})
            call("subscribe", message)
            if index < LIFETIMES_MEASURED:
                call("disconnect", self._event("Disconnect", connection_id, connected_at))
            else:
                kept.append(connection_id)
        posted = self.poster.wire.take()
        # The registry's first items are the stream function's own: their size as stored.
        from market_data import store

        table = store.get_table(self.settings)
        for connection_id in kept:
            item = table.get_item(Key={"pk": "CONN", "sk": connection_id}).get("Item")
            if item is None:
                raise RuntimeError(f"connection {connection_id} was not registered")
            self.items.append(item)
        self.dynamo.take()
        counts = {kind: len(samples) for kind, samples in durations.items()}
        return StreamLifetime(
            billed_ms={
                kind: fmean(max(1, math.ceil(ms)) for ms in samples) for kind, samples in durations.items()
            },
            p50_ms={kind: sorted(samples)[len(samples) // 2] for kind, samples in durations.items()},
            ops={kind: Counter({op: n / counts[kind] for op, n in ops[kind].items()}) for kind in ops},  # type: ignore[misc]
            printed_bytes={kind: printed_bytes[kind] / counts[kind] for kind in printed_bytes},
            snapshot_bytes=posted.message_bytes["snapshot"] / max(posted.messages["snapshot"], 1),
            access_log_bytes=_stream_access_log_bytes(),
        )

    # --- the registry --------------------------------------------------------------------------------
    def _register_up_to(self, count: int) -> None:
        """Connections written straight into the table, shaped as the stream function's own."""
        import boto3
        from botocore.config import Config

        from local_stack.websocket import aws_id
        from market_data.clock import now_ms

        shape = set(self.items[0])
        resource_ = boto3.resource(
            "dynamodb", endpoint_url=self.settings.dynamodb_endpoint_url, config=Config(read_timeout=60)
        )
        table = resource_.Table(self.settings.market_data_table_name)
        now = now_ms()
        with table.batch_writer() as batch:
            for index in range(len(self.items), count):
                pairs = {self.pairs[(index + k) % len(self.pairs)] for k in range(PAIRS_PER_CLIENT)}
                item = {
                    "pk": "CONN", "sk": aws_id(), "connectedAt": now, "pairs": pairs,
                    "expiresAt": (now + 2 * 3_600_000) // 1000,
                }  # fmt: skip
                if set(item) != shape:
                    raise RuntimeError(f"the stream function's item has {sorted(shape)}, not {sorted(item)}")
                batch.put_item(Item=item)
                self.items.append(item)
        self.replay.changed()

    def _both_ways(self, count: int, pages: list[tuple[int, float]], stack: Stack) -> RegistryBothWays:
        import orjson
        import redis

        item_bytes = sum(dynamodb_item_bytes(item) for item in self.items[:count])
        key = "bench:registry"  # not a service key: written, read once, deleted
        with contextlib.closing(redis.Redis.from_url(stack.redis_url)) as client:
            client.delete(key)
            client.hset(
                key,
                mapping={
                    str(item["sk"]): orjson.dumps(
                        {"connectedAt": int(item["connectedAt"]), "pairs": sorted(item["pairs"])}
                    )
                    for item in self.items[:count]
                },
            )
            memory = int(client.memory_usage(key) or 0)  # type: ignore[arg-type]
            before = self.cache_wire.snapshot()
            client.hgetall(key)
            read = self.cache_wire.since(before)
            client.delete(key)
        return RegistryBothWays(
            count, sum(size for size, _ in pages), len(pages), sum(ms for _, ms in pages), item_bytes,
            read.bytes, read.commands, memory,
        )  # fmt: skip

    # --- capacity ------------------------------------------------------------------------------------
    def _capacity(self, connections: int) -> list[Capacity]:
        from market_data.config import get_settings

        found = []
        self.stand.set_delay(CAPACITY_LATENCY_MS)
        try:
            for concurrency in CAPACITY_CONCURRENCY:
                os.environ["BROADCAST_CONCURRENCY"] = str(concurrency)
                reset_push_clients()
                self.poster.attach(get_settings())
                runs = [self._slot(connections) for _ in range(CAPACITY_TICKS)]
                found.append(
                    Capacity(
                        "broadcaster",
                        concurrency,
                        CAPACITY_LATENCY_MS,
                        sum(run.sent for run in runs),
                        sum(run.fanout_s for run in runs),
                        sum(i.phases.fanout_cpu_ms for run in runs for i in run.invocations) / 1000,
                    )
                )
        finally:
            self.stand.set_delay(0)
            os.environ.pop("BROADCAST_CONCURRENCY", None)
            reset_push_clients()
            self.poster.attach(get_settings())
        return found

    def _sdk(self, stand: StandIn) -> list[Capacity]:
        """The same posts through the SDK's client: what the Poster saves."""
        found = []
        for latency in (0.0, CAPACITY_LATENCY_MS):
            stand.set_delay(latency)
            try:
                found.append(_sdk_posts(stand.url, SDK_POSTS, DEFAULT_CONCURRENCY, latency))
            finally:
                stand.set_delay(0)
        stand.recorded()
        return found

    def _invoke_request_bytes(self) -> float:
        """The fetcher's Invoke of the broadcaster as the SDK sends it (payload of a 20-pair slot)."""
        from market_data import push

        starter = push.get_broadcast_starter(self.settings)
        if starter is None:
            raise RuntimeError("no broadcaster configured")
        payload = {"slot": 1, "slotMs": 4000, "pairs": self.pairs, "status": "ok", "reason": ""}
        wire = SdkWire()
        # The starter keeps its boto3 client private; the probe hangs on that client's events.
        with wire.watching(starter._client):
            starter.start(payload)
        self.stand.recorded()
        return wire.request_bytes["Invoke"] / max(wire.requests["Invoke"], 1)

    # --- the figures the model prices ----------------------------------------------------------------
    def _figures(
        self, slot_runs: dict[int, list[SlotRun]], lifetime: StreamLifetime, invoke_bytes: float
    ) -> PushFigures:
        from local_stack.template import function_definition, function_properties, load_template
        from market_data.stream import HEARTBEAT_EVERY_MS, heartbeat_message

        template = load_template()
        ticks = {count: _tick_figures(count, runs, self.items) for count, runs in slot_runs.items()}
        all_runs = [run for runs in slot_runs.values() for run in runs]
        posts = SdkWire()
        for run in all_runs:
            posts.requests.update(run.posts.requests)
            posts.request_bytes.update(run.posts.request_bytes)
            posts.response_bytes.update(run.posts.response_bytes)
            posts.messages.update(run.posts.messages)
            posts.message_bytes.update(run.posts.message_bytes)
        connection_slots = sum(run.connections for run in all_runs)
        update_share = posts.messages["update"] / connection_slots
        post_count = max(posts.requests["PostToConnection"], 1)
        platform = {}
        for name in (BROADCASTER, "StreamFunction"):
            logging = function_properties(template, name).get("LoggingConfig", {})
            drops = str(logging.get("SystemLogLevel", "INFO")).upper() in ("WARN", "ERROR", "FATAL")
            platform[name] = 0 if drops else LAMBDA_PLATFORM_LOG_BYTES
        retention = int(template["Parameters"]["LogRetentionInDays"]["Default"])
        stream_ops = sum(lifetime.ops.values(), Counter())
        return PushFigures(
            ticks=ticks,
            update_share=update_share,
            update_body_bytes=posts.message_bytes["update"] / max(posts.messages["update"], 1),
            heartbeat_body_bytes=len(heartbeat_message(1_800_000_000_000)),
            snapshot_body_bytes=lifetime.snapshot_bytes,
            post_request_bytes=posts.request_bytes["PostToConnection"] / post_count,
            post_response_bytes=posts.response_bytes["PostToConnection"] / post_count,
            invoke_request_bytes=invoke_bytes,
            stream_billed_ms=sum(lifetime.billed_ms.values()),
            # Items are under 4 KB and 1 KB: 1 RRU per consistent GetItem, 1 WRU per write.
            stream_reads=stream_ops["GetItem consistent"] + stream_ops["GetItem"] * 0.5,
            stream_writes=stream_ops["PutItem"] + stream_ops["UpdateItem"] + stream_ops["BatchWriteItem"],
            stream_log_bytes=sum(lifetime.printed_bytes.values()) + 3 * platform["StreamFunction"],
            stream_access_log_bytes=lifetime.access_log_bytes,
            broadcaster_memory_mb=function_definition(template, BROADCASTER).memory_mb,
            stream_memory_mb=function_definition(template, "StreamFunction").memory_mb,
            broadcaster_platform_log_bytes=platform[BROADCASTER],
            heartbeat_every_slots=max(1, HEARTBEAT_EVERY_MS // self.interval - 1),
            fetch_interval_s=self.interval / 1000,
            log_retention_days=retention,
        )


def _tick_figures(count: int, runs: list[SlotRun], items: list[dict[str, Any]]) -> BroadcastTick:
    def mean(values: list[float]) -> float:
        return fmean(values) if values else 0.0

    def ecpus(run: SlotRun) -> float:
        return sum(
            math.ceil(i.cache.bytes / 1024) + i.cache.commands for i in run.invocations if i.cache.commands
        )

    return BroadcastTick(
        connections=count,
        invocations=mean([len(run.invocations) for run in runs]),
        wall_ms=mean([run.wall_ms for run in runs]),
        cpu_ms=mean([run.cpu_ms for run in runs]),
        posts=mean([run.posts.requests["PostToConnection"] for run in runs]),
        update_posts=mean([run.posts.messages["update"] for run in runs]),
        heartbeat_posts=mean([run.posts.messages["heartbeat"] for run in runs]),
        queries=mean([sum(i.ops["Query"] for i in run.invocations) for run in runs]),
        query_bytes=mean([sum(i.query_bytes for i in run.invocations) for run in runs]),
        query_item_bytes=sum(dynamodb_item_bytes(item) for item in items[:count]),
        consistent_reads=mean([sum(i.ops["GetItem consistent"] for i in run.invocations) for run in runs]),
        writes=mean([sum(i.ops["UpdateItem"] + i.ops["PutItem"] for i in run.invocations) for run in runs]),
        cache_ecpus=mean([ecpus(run) for run in runs]),
        emf_bytes=mean([sum(i.emf_bytes for i in run.invocations) for run in runs]),
        split_invoke_bytes=mean([run.posts.request_bytes["Invoke"] for run in runs]),
    )


def dynamodb_item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it: each attribute's name plus its value (strings their
    UTF-8 length; numbers one byte per two significant digits plus one; sets their elements; lists
    3 bytes plus one per element plus the elements)."""

    def value_bytes(value: Any) -> int:
        if isinstance(value, str):
            return len(value.encode())
        if isinstance(value, bool):
            return 1
        if isinstance(value, int | Decimal):
            digits = str(abs(Decimal(value)).normalize()).replace(".", "").lstrip("0") or "0"
            return math.ceil(len(digits) / 2) + 1
        if isinstance(value, set | frozenset):
            return sum(value_bytes(element) for element in value)
        if isinstance(value, list | tuple):
            return 3 + sum(1 + value_bytes(element) for element in value)
        raise TypeError(f"no size for {type(value).__name__}: {value!r}")

    return sum(len(name.encode()) + value_bytes(value) for name, value in item.items())


def _stream_access_log_bytes() -> float:
    """The WebSocket stage's access log lines for one connection's three route calls (the Format in
    template.yaml rendered with an event's values; an empty value renders as '-')."""
    from local_stack.template import load_template

    template = load_template()
    stage = next(res for res in template["Resources"].values() if res["Type"] == "AWS::ApiGatewayV2::Stage")
    text = str(stage["Properties"]["AccessLogSettings"]["Format"]).strip()
    total = 0
    for route, kind in (("$connect", "CONNECT"), ("$default", "MESSAGE"), ("$disconnect", "DISCONNECT")):
        values = {
            "requestId": "BFaVtH2HoAMFZEQ=", "identity.sourceIp": "166.90.225.1",
            "requestTime": "11/Nov/2024:13:45:46 +0000", "routeKey": route, "eventType": kind,
            "connectionId": "BFaT_fALIAMCKug=", "status": "200",
        }  # fmt: skip
        total += len(_rendered(text, values)) + 1
    return total


def _rendered(format_text: str, values: dict[str, str]) -> str:
    """An access log Format with each $context variable replaced (an empty one renders as '-')."""
    return CONTEXT_VARIABLE.sub(lambda match: values.get(match.group(1), "-"), format_text)


def _sdk_posts(url: str, posts: int, threads: int, latency_ms: float) -> Capacity:
    """``posts`` PostToConnection calls to the stand-in through the SDK's own
    ``apigatewaymanagementapi`` client, ``threads`` at a time: what the Poster saves per post."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=url,
        config=Config(max_pool_connections=threads, retries={"max_attempts": 1, "mode": "standard"}),
    )
    body = b'{"type":"update","slot":1795980000000,"prices":{}}' + b" " * 800

    def post(index: int) -> None:
        client.post_to_connection(ConnectionId=f"bench{index:010d}=", Data=body)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(post, range(threads)))  # connections opened
        cpu, started = own_cpu_s(), time.perf_counter()
        list(pool.map(post, range(posts)))
        seconds, cpu_s = time.perf_counter() - started, own_cpu_s() - cpu
    return Capacity("SDK client", threads, latency_ms, posts, seconds, cpu_s)
