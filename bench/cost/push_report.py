"""The push rows: the broadcaster's scaling, one invocation's capacity and what it says of the
settings, the registry's cost per slot both ways (the stream scenario), and push's monthly cost
beside polling (the cost scenario). Past 300 lines: each row says where its figure comes from."""

from __future__ import annotations

import math
from statistics import fmean

from bench.common import Row
from bench.cost.measure_push import (
    CAPACITY_CONNECTIONS,
    CAPACITY_LATENCY_MS,
    PushMeasurement,
    RegistryBothWays,
)
from bench.cost.model import PRICES_USD, MeasuredFigures, monthly_cost, total_usd
from bench.cost.push_model import (
    LAMBDA_FULL_VCPU_MB,
    POLL_INTERVALS_S,
    PUSH_CLIENT_COUNTS,
    TARGET_FLOOR_RATIO,
    floor_usd_per_client,
    push_monthly_cost,
    push_total_usd,
)

STREAM = "stream"
COST = "cost model push"
SLOT_SHARE_FOR_FANOUT = 0.5  # the margin: one invocation's whole work ends within half a slot
DELIVERY_TARGET_MS = 250.0  # the delivery target, for what it would take per invocation
POLL_PAIRS = 20  # the polling model's case: every client reads all 20 pairs
# The lines priced by the bytes a message carries rather than by the message: shown apart.
BYTES_CARRIED = ("Data transfer out (messages)", "NAT gateway data (posts, invokes)")


def _r(value: float) -> float | int:
    if abs(value) >= 1000:
        return round(value)
    if abs(value) >= 10:
        return round(value, 1)
    return round(value, 3)


# --- the stream scenario's rows -------------------------------------------------------------------
def _scaling_rows(m: PushMeasurement) -> list[Row]:
    rows = []
    memory = m.figures.broadcaster_memory_mb
    for count, runs in m.slots.items():
        invocations = [i for run in runs for i in run.invocations]
        sent = sum(run.sent for run in runs)
        tick = m.figures.ticks[count]
        rows.append(
            Row(
                STREAM,
                f"broadcaster per slot: {count:,} connections",
                {
                    "invocations": _r(tick.invocations),
                    "total_ms": _r(fmean(run.wall_ms for run in runs)),
                    "longest_ms": _r(fmean(run.longest_ms for run in runs)),
                    "cpu_ms": _r(tick.cpu_ms),
                    "query_ms": _r(fmean(i.phases.query_ms for i in invocations)),
                    "decide_ms": _r(fmean(i.phases.decide_ms for i in invocations if i.shard == 0)),
                    "fanout_ms": _r(fmean(i.phases.fanout_ms for i in invocations)),
                    "posts": _r(tick.posts),
                    "ms_per_post": _r(sum(run.wall_ms for run in runs) / max(sent, 1)),
                    f"lambda_{memory}mb_ms": _r(tick.lambda_ms(memory)),
                },
                notes=[
                    f"{len(runs)} slots; every invocation Queries the whole registry "
                    f"({_r(tick.query_bytes / max(tick.invocations, 1))} bytes in "
                    f"{_r(tick.queries / max(tick.invocations, 1))} page(s)); total: the slot's "
                    "invocations one after the other (what Lambda bills), longest: one of them "
                    "(what the last client waits for when they run side by side)",
                    f"lambda_{memory}mb_ms: this machine's CPU time at {memory}/{LAMBDA_FULL_VCPU_MB} "
                    "of a vCPU (a core here taken as one of Lambda's)",
                ],
            )
        )
    return rows


def capacity(m: PushMeasurement, memory_mb: int, concurrency: int | None = None) -> dict[str, float]:
    """One invocation's posts per second and the connections it serves within the margin, from the
    CPU a post costs here, at ``memory_mb``'s share of a vCPU, with ``concurrency`` posts in flight
    each waiting CAPACITY_LATENCY_MS."""
    runs = m.slots[CAPACITY_CONNECTIONS]
    invocations = [i for run in runs for i in run.invocations]
    sent = sum(i.phases.sent for i in invocations)
    cpu_ms_per_post = sum(i.phases.fanout_cpu_ms for i in invocations) / sent
    # What the first invocation spends before posting, per connection of the registry (its Query;
    # the splits are handed their connections) and once.
    query_cpu_ms_per_connection = (
        fmean(i.phases.query_cpu_ms for i in invocations if i.shard == 0) / CAPACITY_CONNECTIONS
    )
    decide_ms = fmean(i.phases.decide_ms for i in invocations if i.shard == 0)
    share = min(memory_mb / LAMBDA_FULL_VCPU_MB, 1.0)
    in_flight = concurrency or m.settings["concurrency"]
    posts_per_s = min(share * 1000 / cpu_ms_per_post, in_flight * 1000 / CAPACITY_LATENCY_MS)
    budget_ms = SLOT_SHARE_FOR_FANOUT * m.settings["fetch_interval_ms"] - decide_ms / share
    per_connection_ms = 1000 / posts_per_s + query_cpu_ms_per_connection / share
    serves = budget_ms / per_connection_ms
    delivery = (DELIVERY_TARGET_MS - decide_ms / share) / per_connection_ms
    return {
        "posts_per_s": posts_per_s,
        "cpu_ms_per_post": cpu_ms_per_post,
        "connections_in_margin": serves,
        "connections_for_delivery_target": max(delivery, 0.0),
        "in_flight_needed": posts_per_s * CAPACITY_LATENCY_MS / 1000,
    }


def _round_down(value: float) -> int:
    step = 50 if value >= 200 else 10
    return max(step, int(value // step * step))


def _capacity_rows(m: PushMeasurement) -> list[Row]:
    runs = m.slots[CAPACITY_CONNECTIONS]
    sent = sum(run.sent for run in runs)
    here_posts_per_s = sent / sum(run.fanout_s for run in runs)
    default = m.settings["concurrency"]
    rows = [
        Row(
            STREAM,
            f"capacity: one invocation, {default} in flight, posts answered at once (here)",
            {
                "posts_per_s": round(here_posts_per_s),
                "cpu_ms_per_post": round(capacity(m, LAMBDA_FULL_VCPU_MB)["cpu_ms_per_post"], 3),
                "connections": CAPACITY_CONNECTIONS,
            },
            notes=["CPU-bound: the work per post on one interpreter, whatever the posts in flight"],
        )
    ]
    for found in m.capacity:
        rows.append(
            Row(
                STREAM,
                f"capacity: one invocation, {found.concurrency} in flight, posts answered after "
                f"{found.latency_ms:g} ms (here)",
                {"posts_per_s": round(found.posts_per_s), "cpu_ms_per_post": round(found.cpu_ms_per_post, 3)},
            )
        )
    for found in m.sdk:
        rows.append(
            Row(
                STREAM,
                f"capacity: the SDK's client, {found.concurrency} threads, "
                f"answered after {found.latency_ms:g} ms",
                {"posts_per_s": round(found.posts_per_s), "cpu_ms_per_post": round(found.cpu_ms_per_post, 3)},
                notes=[
                    "boto3's apigatewaymanagementapi client posting the same messages: what the "
                    "Poster (botocore's signer on kept-alive http.client connections) saves"
                ],
            )
        )
    best = max(m.capacity, key=lambda found: found.posts_per_s)
    enough = min(
        (found for found in m.capacity if found.posts_per_s >= 0.9 * best.posts_per_s),
        key=lambda found: found.concurrency,
    )
    memory = m.figures.broadcaster_memory_mb
    at_memory = capacity(m, memory)
    at_vcpu = capacity(m, LAMBDA_FULL_VCPU_MB)
    configured = m.settings["per_invocation"]
    recommended = _round_down(at_memory["connections_in_margin"])
    slot_s = m.settings["fetch_interval_ms"] / 1000
    rows.append(
        Row(
            STREAM,
            f"capacity: connections one invocation serves within {SLOT_SHARE_FOR_FANOUT:g} of a "
            f"{slot_s:g} s slot",
            {
                f"at_{memory}mb": round(at_memory["connections_in_margin"]),
                f"posts_per_s_at_{memory}mb": round(at_memory["posts_per_s"]),
                f"at_{LAMBDA_FULL_VCPU_MB}mb": round(at_vcpu["connections_in_margin"]),
                f"posts_per_s_at_{LAMBDA_FULL_VCPU_MB}mb": round(at_vcpu["posts_per_s"]),
                "in_flight_needed": round(at_memory["in_flight_needed"], 1),
                "concurrency_enough_here": enough.concurrency,
                f"within_{DELIVERY_TARGET_MS:g}ms_at_{memory}mb": round(
                    at_memory["connections_for_delivery_target"]
                ),
            },
            limit=f"BROADCAST_CONNECTIONS_PER_INVOCATION {configured:,}",
            target=f"{configured:,} <= capacity at {memory} MB",
            met=configured <= at_memory["connections_in_margin"],
            notes=[
                f"posts per second: min(the {memory} MB share of a vCPU / CPU per post measured here, "
                f"posts in flight / {CAPACITY_LATENCY_MS:g} ms); the invocation's own Query (per "
                "connection) and decision come off the budget",
                f"suggested: BROADCAST_CONNECTIONS_PER_INVOCATION {recommended:,} at MemorySize {memory}, "
                f"or about {_round_down(at_vcpu['connections_in_margin']):,} at {LAMBDA_FULL_VCPU_MB} MB "
                "(the same GB-seconds: CPU-bound work takes proportionally less time)",
                f"BROADCAST_CONCURRENCY: {enough.concurrency} in flight already reached "
                f"{enough.posts_per_s:.0f} posts/s here with {CAPACITY_LATENCY_MS:g} ms answers (the most: "
                f"{best.posts_per_s:.0f} at {best.concurrency}); at {memory} MB a {CAPACITY_LATENCY_MS:g} ms "
                f"round trip needs {at_memory['in_flight_needed']:.1f} in flight, at "
                f"{LAMBDA_FULL_VCPU_MB} MB {at_vcpu['in_flight_needed']:.1f}",
            ],
        )
    )
    return rows


def registry_figures(both: RegistryBothWays, slots_per_month: float) -> dict[str, float]:
    """One slot's registry reads both ways, per month in dollars; the registry is read once a
    slot (the first invocation hands the splits their connections). DynamoDB: a Query (eventually
    consistent, 0.5 RRU per 4 KB), the stream state's consistent GetItem (1 RRU), the heartbeat
    claim (a conditional UpdateItem, 1 WRU). The cache: an HGETALL (max(1, ceil(kB)) ECPUs), a GET
    and a conditional SET of the state (1 ECPU each)."""
    price = PRICES_USD
    rru_json = 0.5 * math.ceil(both.query_json_bytes / 4096) + 1
    rru_items = 0.5 * math.ceil(both.item_bytes / 4096) + 1
    wru = 1.0
    ecpus = max(1, math.ceil(both.hash_reply_bytes / 1024)) + 2
    dynamodb_usd = (
        slots_per_month
        * (rru_json * price["dynamodb_per_million_rru"] + wru * price["dynamodb_per_million_wru"])
        / 1e6
    )
    dynamodb_items_usd = (
        slots_per_month
        * (rru_items * price["dynamodb_per_million_rru"] + wru * price["dynamodb_per_million_wru"])
        / 1e6
    )
    cache_usd = slots_per_month * ecpus * price["elasticache_valkey_per_million_ecpu"] / 1e6
    return {
        "query_bytes": both.query_json_bytes,
        "item_bytes": both.item_bytes,
        "hgetall_bytes": both.hash_reply_bytes,
        "rru_per_slot": rru_json,
        "rru_per_slot_items": rru_items,
        "wru_per_slot": wru,
        "ecpus_per_slot": ecpus,
        "dynamodb_usd_month": dynamodb_usd,
        "dynamodb_items_usd_month": dynamodb_items_usd,
        "cache_usd_month": cache_usd,
    }


def _registry_rows(m: PushMeasurement) -> list[Row]:
    rows = []
    slots = m.figures.slots_per_month
    for count, both in m.registry.items():
        f = registry_figures(both, slots)
        rows.append(
            Row(
                STREAM,
                f"registry per slot both ways: {count:,} connections",
                {
                    "query_bytes": both.query_json_bytes,
                    "item_bytes": both.item_bytes,
                    "hgetall_bytes": both.hash_reply_bytes,
                    "rru": f["rru_per_slot"],
                    "wru": 1,
                    "ecpus": f["ecpus_per_slot"],
                    "dynamodb_usd_month": round(f["dynamodb_usd_month"], 2),
                    "cache_usd_month": round(f["cache_usd_month"], 2),
                },
                notes=[
                    f"DynamoDB: a Query a slot ({both.query_pages} page(s) from moto, answered in "
                    f"{both.moto_ms:.0f} ms there), the state's consistent GetItem, the heartbeat claim; RRU "
                    f"from the answer's JSON (an upper bound: the items' own size gives "
                    f"{f['rru_per_slot_items']:g} RRU, ${f['dynamodb_items_usd_month']:.2f} a month)",
                    "cache: an HGETALL of the same data a slot (a hash of "
                    f"{both.hash_memory_bytes:,} bytes in memory, within the cache's 100 MB minimum), a GET "
                    "and a conditional SET",
                    f"{slots:,.0f} slots a month (4 s)",
                ],
            )
        )
    return rows


def stream_rows(m: PushMeasurement) -> list[Row]:
    rows = [*_scaling_rows(m), *_capacity_rows(m), *_registry_rows(m)]
    rows[0].notes.append(f"push measurement ran in {m.seconds:.1f} s")
    rows[0].notes.extend(m.notes)
    return rows


# --- the cost scenario's rows ---------------------------------------------------------------------
def polling_per_client(
    measured: MeasuredFigures, clients: int, poll_interval_s: float, *, pairs: int = POLL_PAIRS, **mode: bool
) -> float:
    """What one polling client adds to the month: the bill with ``clients`` less the bill with
    none (the fetcher, NAT hours, cache minimum, metrics and the rest are there either way).
    ``mode``: monthly_cost's cdn, gzip and revalidate."""
    with_clients = total_usd(monthly_cost(pairs, clients, poll_interval_s, measured, **mode))
    without = total_usd(monthly_cost(pairs, 0, poll_interval_s, measured, **mode))
    return (with_clients - without) / clients


# The ways a client can follow prices, as the comparison prices them (docs/cost-model.md).
MODES: dict[str, tuple[float, dict[str, bool]]] = {
    "polling_2s": (2.0, {}),
    "polling_4s": (4.0, {}),
    "polling_2s_gzip": (2.0, {"gzip": True}),
    "polling_2s_304": (2.0, {"gzip": True, "revalidate": True}),
    "polling_2s_cdn": (2.0, {"cdn": True}),
    "polling_4s_gzip": (4.0, {"gzip": True}),
    "polling_4s_cdn": (4.0, {"cdn": True}),
}
MODE_PAIRS = (20, 100)


def modes_rows(measured: MeasuredFigures, push_per_client: dict[int, float], floor: float) -> list[Row]:
    """Cost per client-month of each way to follow prices, at each client and pair count."""
    rows = []
    for clients in PUSH_CLIENT_COUNTS:
        for pairs in MODE_PAIRS:
            figures = {
                name: round(polling_per_client(measured, clients, poll, pairs=pairs, **mode), 4)
                for name, (poll, mode) in MODES.items()
            }
            best = min(figures, key=lambda name: figures[name])
            rows.append(
                Row(
                    COST,
                    f"per client-month, {clients:,} clients reading {pairs} pairs: every mode",
                    {**figures, "push": round(push_per_client[clients], 4), "floor": round(floor, 4),
                     "best_polling": best, "best_polling_x_floor": round(figures[best] / floor, 2)},
                    notes=["push: three pairs per client, whatever the pairs listed"],
                )
            )  # fmt: skip
    return rows


def cost_rows(m: PushMeasurement, measured: MeasuredFigures) -> list[Row]:
    push = m.figures
    floor = floor_usd_per_client(push)
    rows = []
    totals: dict[int, float] = {}
    for clients in PUSH_CLIENT_COUNTS:
        items = push_monthly_cost(clients, push)
        totals[clients] = push_total_usd(items) / clients
        for item in items:
            rows.append(
                Row(
                    COST,
                    f"{clients:,} clients pushed: {item.name}",
                    {
                        **{name: _r(value) for name, value in item.quantity.items()},
                        "usd_month": round(item.usd_month, 2),
                        "usd_per_client": round(item.usd_month / clients, 4),
                    },
                    notes=list(item.notes),
                )
            )
        ratio = totals[clients] / floor
        carried = sum(item.usd_month for item in items if item.name in BYTES_CARRIED)
        rows.append(
            Row(
                COST,
                f"{clients:,} clients pushed: total",
                {
                    "usd_month": round(push_total_usd(items), 2),
                    "usd_per_client": round(totals[clients], 4),
                    "floor_per_client": round(floor, 4),
                    "x_floor": round(ratio, 3),
                    "x_floor_without_bytes": round((push_total_usd(items) - carried) / clients / floor, 3),
                },
                limit=f"one message a slot at $1.00/M: ${floor:.3f} a client-month",
                target=f"<= {TARGET_FLOOR_RATIO:g} x floor" if clients == PUSH_CLIENT_COUNTS[0] else "",
                met=ratio <= TARGET_FLOOR_RATIO if clients == PUSH_CLIENT_COUNTS[0] else None,
                notes=[
                    f"the floor: {push.slots_per_month:,.0f} slots a month (730 h; a 30-day month has "
                    "648,000) x $1.00/M",
                    "list prices, us-east-1, on demand, no free tier; the service's own lines (fetcher, "
                    "NAT hours, cache, metrics) are there with or without push and are not included",
                    "x_floor_without_bytes: the same without the data transfer out and NAT lines, which "
                    "grow with each message's bytes",
                ],
            )
        )
    rows += modes_rows(measured, totals, floor)
    for clients in PUSH_CLIENT_COUNTS:
        polling = {
            f"polling_{poll:g}s": round(polling_per_client(measured, clients, poll), 4)
            for poll in POLL_INTERVALS_S
        }
        rows.append(
            Row(
                COST,
                f"per client-month, {clients:,} clients: push beside polling",
                {"push": round(totals[clients], 4), **polling, "floor": round(floor, 4)},
                notes=[
                    f"polling: every client reads all {POLL_PAIRS} pairs (the cost model's case), the bill "
                    "with the clients less the bill without them; push: three pairs per client",
                ],
            )
        )
    return rows
