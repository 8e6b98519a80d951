"""The cost of push: every line of a month's bill that WebSocket clients add, from figures measured
in the same run (``bench.cost.measure_push`` fills ``PushFigures``), beside polling.

``push_monthly_cost(clients, push, ...)`` spells every line out, like ``monthly_cost`` for polling:
API Gateway's WebSocket messages and connection minutes, the broadcaster's Lambda requests (one
Invoke from the fetcher per slot, plus the splits) and duration, the stream function (one
connect, subscribe and disconnect per client every 2 hours, since API Gateway closes connections
at 2 hours), the connection registry's reads and writes, the broadcaster's cache commands, the
messages' bytes out to the internet, the posts' bytes through the NAT gateway, and the logs.

The floor it is held to: one message per client per slot at $1.00 a million, the least a client
kept current every slot can cost in API Gateway messages alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.cost.model import (
    GB,
    HOURS_PER_MONTH,
    PRICES_USD,
    SECONDS_PER_MONTH,
    LineItem,
    _logs_usd,
    interpolated,
)

WEBSOCKET_FIRST_TIER_MESSAGES = 1_000_000_000
CONNECTION_LIFETIME_H = 2.0  # API Gateway closes a WebSocket connection after 2 hours
MESSAGES_PER_LIFETIME = 2  # the client's subscribe (a message received) and its snapshot (one sent)
INVOCATIONS_PER_LIFETIME = 3  # the stream function: $connect, the subscribe message, $disconnect
FRAME_HEADER_BYTES = 4  # a server's text frame of 126 bytes to 64 KB: 2 bytes + a 2-byte length
LAMBDA_FULL_VCPU_MB = 1_769  # Lambda gives a function one vCPU at 1,769 MB, in proportion below it
MESSAGE_BILLING_BYTES = 32 * 1024  # API Gateway meters WebSocket messages in 32 KB increments
TARGET_FLOOR_RATIO = 1.2
PUSH_CLIENT_COUNTS = (1_000, 10_000)
POLL_INTERVALS_S = (2.0, 4.0)


@dataclass(frozen=True)
class BroadcastTick:
    """One slot's broadcasting with ``connections`` registered: every invocation of the slot
    together (the one the fetcher starts and its splits), as measured."""

    connections: int
    invocations: float
    wall_ms: float  # summed over the slot's invocations, measured here
    cpu_ms: float  # this machine's CPU time over them (every thread of the process)
    posts: float
    update_posts: float
    heartbeat_posts: float
    queries: float  # registry Queries (the first invocation's; splits are handed their connections)
    query_bytes: float  # their answers as DynamoDB sends them (JSON), all of them together
    query_item_bytes: float  # DynamoDB's own size of the items one Query reads (what it bills)
    consistent_reads: float  # the stream state's GetItem (ConsistentRead)
    writes: float  # conditional UpdateItems (the heartbeat claim every slot; status claims)
    cache_ecpus: float  # ceil(kB) + one per command, per invocation that used the cache
    emf_bytes: float  # the metric documents printed
    split_invoke_bytes: float = 0.0  # the splits' Invokes as sent, their connections in the payload

    def lambda_ms(self, memory_mb: int) -> float:
        """The duration Lambda bills: the CPU this machine spent, stretched to the share of a vCPU
        that ``memory_mb`` buys (a core here taken as one of Lambda's), or the time measured
        here when waiting took longer than that."""
        share = min(memory_mb / LAMBDA_FULL_VCPU_MB, 1.0)
        return max(self.wall_ms, self.cpu_ms / share)


@dataclass(frozen=True)
class PushFigures:
    ticks: dict[int, BroadcastTick]
    update_share: float  # updates per connection per slot: how often a client's pairs changed
    update_body_bytes: float
    heartbeat_body_bytes: float
    snapshot_body_bytes: float
    post_request_bytes: float  # a post as it goes on the wire: request line, headers, an update's body
    post_response_bytes: float
    invoke_request_bytes: float  # the fetcher's Invoke of the broadcaster
    stream_billed_ms: float  # per connection lifetime: connect + subscribe + disconnect
    stream_reads: float  # RRU per lifetime
    stream_writes: float  # WRU per lifetime
    stream_log_bytes: float  # per lifetime: printed, plus Lambda's platform lines
    stream_access_log_bytes: float  # per lifetime: the stage's access log, one line per route call
    broadcaster_memory_mb: int
    stream_memory_mb: int
    broadcaster_platform_log_bytes: int  # per invocation
    heartbeat_every_slots: int
    fetch_interval_s: float
    log_retention_days: int

    def at(self, connections: int) -> BroadcastTick:
        """The tick measured at ``connections``, or linear between (or beyond) the nearest two."""
        return interpolated(self.ticks, connections, key="connections")

    @property
    def slots_per_month(self) -> float:
        return SECONDS_PER_MONTH / self.fetch_interval_s

    def messages_per_client_slot(self) -> float:
        """Sent per connection per slot: an update when its pairs changed; a heartbeat in a
        heartbeat round (every ``heartbeat_every_slots``) only when nothing else went."""
        return self.update_share + (1 - self.update_share) / self.heartbeat_every_slots


def floor_usd_per_client(push: PushFigures) -> float:
    """One message per client per slot at $1.00 a million."""
    return push.slots_per_month / 1e6 * PRICES_USD["websocket_messages_per_million_first_1b"]


def _messages_usd(messages: float) -> float:
    first = min(messages, WEBSOCKET_FIRST_TIER_MESSAGES)
    return (
        first / 1e6 * PRICES_USD["websocket_messages_per_million_first_1b"]
        + (messages - first) / 1e6 * PRICES_USD["websocket_messages_per_million_after_1b"]
    )


def push_monthly_cost(clients: int, push: PushFigures) -> list[LineItem]:
    """Every line of the month's bill that ``clients`` connected all month add."""
    price, slots = PRICES_USD, push.slots_per_month
    tick = push.at(clients)
    lifetimes = clients * HOURS_PER_MONTH / CONNECTION_LIFETIME_H
    updates = clients * slots * push.update_share
    heartbeats = clients * slots * (1 - push.update_share) / push.heartbeat_every_slots
    messages = updates + heartbeats + lifetimes * MESSAGES_PER_LIFETIME
    items: list[LineItem] = []

    items.append(
        LineItem(
            "WebSocket messages",
            {
                "messages_month": messages,
                "per_client_slot": push.messages_per_client_slot(),
                "update_share": push.update_share,
            },
            _messages_usd(messages),
            (
                f"an update per client per slot its pairs changed ({push.update_share:.3f} of slots, "
                f"measured), a heartbeat every {push.heartbeat_every_slots} slots only when nothing else "
                "went, a subscribe and a snapshot per connection (2 h); each under 32 KB: one message",
            ),
        )
    )
    minutes = clients * HOURS_PER_MONTH * 60
    items.append(
        LineItem(
            "WebSocket connection minutes",
            {"minutes_month": minutes},
            minutes / 1e6 * price["websocket_connection_minutes_per_million"],
        )
    )
    invocations = slots * tick.invocations
    items.append(
        LineItem(
            "Lambda broadcaster: requests",
            {"invocations_month": invocations, "per_slot": tick.invocations},
            invocations / 1e6 * price["lambda_per_million_requests"],
            ("the fetcher's Invoke each slot, plus the splits past BROADCAST_CONNECTIONS_PER_INVOCATION",),
        )
    )
    lambda_ms = tick.lambda_ms(push.broadcaster_memory_mb)
    broadcaster_gb_s = slots * lambda_ms / 1000 * push.broadcaster_memory_mb / 1024
    items.append(
        LineItem(
            "Lambda broadcaster: duration",
            {
                "ms_per_slot_here": tick.wall_ms,
                "cpu_ms_per_slot_here": tick.cpu_ms,
                "ms_per_slot_lambda": lambda_ms,
                "gb_s_month": broadcaster_gb_s,
            },
            broadcaster_gb_s * price["lambda_arm64_per_gb_second"],
            (
                f"this machine's CPU time stretched to the {push.broadcaster_memory_mb} MB share of a vCPU "
                f"({push.broadcaster_memory_mb}/{LAMBDA_FULL_VCPU_MB})",
            ),
        )
    )
    stream_requests = lifetimes * INVOCATIONS_PER_LIFETIME
    stream_gb_s = lifetimes * push.stream_billed_ms / 1000 * push.stream_memory_mb / 1024
    items.append(
        LineItem(
            "Lambda stream function",
            {"invocations_month": stream_requests, "billed_ms_per_lifetime": push.stream_billed_ms},
            stream_requests / 1e6 * price["lambda_per_million_requests"]
            + stream_gb_s * price["lambda_arm64_per_gb_second"],
            ("connect, subscribe, disconnect once per client every 2 h (API Gateway's limit)",),
        )
    )
    # Eventually consistent Query: 0.5 RRU per 4 KB; the stream state's GetItem is consistent.
    query_rru = tick.queries * 0.5 * math.ceil(tick.query_bytes / max(tick.queries, 1) / 4096)
    rru = slots * (query_rru + tick.consistent_reads) + lifetimes * push.stream_reads
    items.append(
        LineItem(
            "DynamoDB registry reads",
            {"rru_month": rru, "rru_per_slot": query_rru + tick.consistent_reads},
            rru / 1e6 * price["dynamodb_per_million_rru"],
            ("Query RRU from its answer's bytes (JSON): an upper bound of the items' own size",),
        )
    )
    wru = slots * tick.writes + lifetimes * push.stream_writes
    items.append(
        LineItem(
            "DynamoDB registry writes",
            {"wru_month": wru, "wru_per_slot": tick.writes},
            wru / 1e6 * price["dynamodb_per_million_wru"],
            ("the heartbeat claim is a conditional write every slot: 1 WRU even when its condition fails",),
        )
    )
    ecpus = slots * tick.cache_ecpus
    items.append(
        LineItem(
            "ElastiCache ECPUs (broadcaster)",
            {"ecpus_month": ecpus, "ecpus_per_slot": tick.cache_ecpus},
            ecpus / 1e6 * price["elasticache_valkey_per_million_ecpu"],
        )
    )
    out_bytes = (
        updates * (push.update_body_bytes + FRAME_HEADER_BYTES)
        + heartbeats * (push.heartbeat_body_bytes + FRAME_HEADER_BYTES)
        + lifetimes * (push.snapshot_body_bytes + FRAME_HEADER_BYTES)
    )
    items.append(
        LineItem(
            "Data transfer out (messages)",
            {"gb_month": out_bytes / GB, "update_bytes": push.update_body_bytes},
            out_bytes / GB * price["data_transfer_out_per_gb"],
            ("message bodies and frame headers; TLS not counted",),
        )
    )
    snapshot_post = push.post_request_bytes - push.update_body_bytes + push.snapshot_body_bytes
    nat_bytes = (
        slots * tick.posts * (push.post_request_bytes + push.post_response_bytes)
        + slots * (push.invoke_request_bytes + tick.split_invoke_bytes)
        + lifetimes * (snapshot_post + push.post_response_bytes)
    )
    items.append(
        LineItem(
            "NAT gateway data (posts, invokes)",
            {
                "gb_month": nat_bytes / GB,
                "bytes_per_post": push.post_request_bytes + push.post_response_bytes,
            },
            nat_bytes / GB * price["nat_gateway_per_gb"],
            (
                "the functions run in the VPC and post to the public management endpoint: every post "
                "crosses the NAT (request and answer as they go on the wire; TLS not counted)",
            ),
        )
    )
    log_bytes = slots * (
        tick.emf_bytes + tick.invocations * push.broadcaster_platform_log_bytes
    ) + lifetimes * (push.stream_log_bytes + push.stream_access_log_bytes)
    items.append(
        LineItem(
            "CloudWatch Logs: broadcaster, stream function, stream access log",
            {"gb_month": log_bytes / GB},
            _logs_usd(log_bytes, push.log_retention_days),
        )
    )
    return items


def push_total_usd(items: list[LineItem]) -> float:
    return sum(item.usd_month for item in items)


def per_client(items: list[LineItem], clients: int) -> float:
    return push_total_usd(items) / clients
