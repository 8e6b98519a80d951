"""The push cost model's arithmetic (bench/cost/push_model.py, bench/cost/push_report.py) on figures
written out here, so each line's formula is checked apart from what a benchmark run measures."""

from __future__ import annotations

import math

import pytest

from bench.cost.measure_push import RegistryBothWays
from bench.cost.model import PRICES_USD, LineItem
from bench.cost.push_model import (
    BroadcastTick,
    PushFigures,
    floor_usd_per_client,
    push_monthly_cost,
    push_total_usd,
)
from bench.cost.push_report import registry_figures

SLOTS = 657_000  # 730 h of 4 s slots


def tick(
    connections: int, *, invocations: float = 1.0, wall_ms: float = 100.0, cpu_ms: float = 80.0
) -> BroadcastTick:
    return BroadcastTick(
        connections=connections, invocations=invocations, wall_ms=wall_ms, cpu_ms=cpu_ms,
        posts=float(connections), update_posts=float(connections), heartbeat_posts=0.0, queries=1.0,
        query_bytes=8192.0, query_item_bytes=4096.0, consistent_reads=1.0, writes=1.0,
        cache_ecpus=30.0, emf_bytes=700.0, split_invoke_bytes=30_000.0 * (invocations - 1),
    )  # fmt: skip


def figures(update_share: float = 1.0) -> PushFigures:
    return PushFigures(
        ticks={1_000: tick(1_000), 10_000: tick(10_000, invocations=5, wall_ms=1000.0, cpu_ms=900.0)},
        update_share=update_share, update_body_bytes=900.0, heartbeat_body_bytes=40.0,
        snapshot_body_bytes=950.0, post_request_bytes=1500.0, post_response_bytes=220.0,
        invoke_request_bytes=1000.0, stream_billed_ms=30.0, stream_reads=1.0, stream_writes=3.0,
        stream_log_bytes=960.0, stream_access_log_bytes=650.0, broadcaster_memory_mb=512,
        stream_memory_mb=512, broadcaster_platform_log_bytes=320, heartbeat_every_slots=6,
        fetch_interval_s=4.0, log_retention_days=30,
    )  # fmt: skip


def line(items: list[LineItem], name: str) -> LineItem:
    return next(item for item in items if item.name == name)


def test_the_floor_is_one_message_a_slot_at_a_dollar_a_million() -> None:
    push = figures()
    assert push.slots_per_month == SLOTS
    assert floor_usd_per_client(push) == pytest.approx(0.657)


def test_messages_are_one_update_a_slot_plus_a_subscribe_and_snapshot_per_two_hour_connection() -> None:
    items = push_monthly_cost(1_000, figures())
    messages = line(items, "WebSocket messages")
    expected = 1_000 * SLOTS + 1_000 * 365 * 2
    assert messages.quantity["messages_month"] == pytest.approx(expected)
    assert messages.usd_month == pytest.approx(expected / 1e6)


def test_messages_past_a_billion_a_month_cost_eighty_cents_a_million() -> None:
    messages = line(push_monthly_cost(10_000, figures()), "WebSocket messages")
    count = 10_000 * SLOTS + 10_000 * 365 * 2
    assert messages.usd_month == pytest.approx(1_000 + (count - 1e9) / 1e6 * 0.80)


def test_a_quiet_client_gets_a_heartbeat_every_round_and_nothing_else() -> None:
    push = figures(update_share=0.0)
    assert push.messages_per_client_slot() == pytest.approx(1 / 6)
    messages = line(push_monthly_cost(1_000, push), "WebSocket messages")
    assert messages.quantity["messages_month"] == pytest.approx(1_000 * SLOTS / 6 + 1_000 * 365 * 2)


def test_connection_minutes_are_every_minute_of_the_month() -> None:
    minutes = line(push_monthly_cost(1_000, figures()), "WebSocket connection minutes")
    assert minutes.quantity["minutes_month"] == 1_000 * 730 * 60
    assert minutes.usd_month == pytest.approx(1_000 * 730 * 60 / 1e6 * 0.25)


def test_broadcaster_duration_is_the_cpu_time_at_the_memory_share_of_a_vcpu() -> None:
    measured = tick(1_000, wall_ms=100.0, cpu_ms=80.0)
    assert measured.lambda_ms(512) == pytest.approx(80.0 * 1769 / 512)
    assert measured.lambda_ms(3008) == 100.0  # a whole vCPU: what was measured here
    duration = line(push_monthly_cost(1_000, figures()), "Lambda broadcaster: duration")
    gb_s = SLOTS * 80.0 * 1769 / 512 / 1000 * 0.5
    assert duration.usd_month == pytest.approx(gb_s * PRICES_USD["lambda_arm64_per_gb_second"])


def test_each_invocation_of_a_slot_is_a_request_and_the_splits_payloads_cross_the_nat() -> None:
    items = push_monthly_cost(10_000, figures())
    assert line(items, "Lambda broadcaster: requests").quantity["invocations_month"] == SLOTS * 5
    reads = line(items, "DynamoDB registry reads")
    # One Query of 8 KB a slot (eventually consistent: 0.5 RRU per 4 KB), the state's consistent
    # GetItem, and one consistent GetItem per two-hour connection.
    assert reads.quantity["rru_per_slot"] == 0.5 * 2 + 1
    assert reads.quantity["rru_month"] == pytest.approx(SLOTS * 2 + 10_000 * 365 * 1)
    nat = line(items, "NAT gateway data (posts, invokes)")
    with_splits = nat.quantity["gb_month"]
    alone = line(push_monthly_cost(1_000, figures()), "NAT gateway data (posts, invokes)").quantity[
        "gb_month"
    ]
    posts_gb = SLOTS * 1720.0 / 2**30  # one post (request and answer) per connection a slot
    assert with_splits - 10 * alone == pytest.approx(SLOTS * (4 * 30_000.0 - 9 * 1000.0) / 2**30, rel=1e-6)
    assert alone > 1_000 * posts_gb


def test_figures_between_measured_counts_are_linear() -> None:
    middle = figures().at(5_500)
    assert middle.invocations == pytest.approx(3.0)
    assert middle.wall_ms == pytest.approx(550.0)


def test_the_total_is_the_sum_of_its_lines() -> None:
    items = push_monthly_cost(1_000, figures())
    assert push_total_usd(items) == pytest.approx(sum(item.usd_month for item in items))
    assert len({item.name for item in items}) == len(items)


def test_registry_both_ways_per_slot_and_per_month() -> None:
    both = RegistryBothWays(
        connections=1_000, query_json_bytes=141_000, query_pages=1, moto_ms=500.0, item_bytes=99_000,
        hash_reply_bytes=115_000, hash_commands=1, hash_memory_bytes=160_000,
    )  # fmt: skip
    found = registry_figures(both, slots_per_month=SLOTS)
    assert found["rru_per_slot"] == 0.5 * math.ceil(141_000 / 4096) + 1
    assert found["ecpus_per_slot"] == math.ceil(115_000 / 1024) + 2
    assert found["dynamodb_usd_month"] == pytest.approx(SLOTS * (found["rru_per_slot"] * 0.125 + 0.625) / 1e6)
    assert found["cache_usd_month"] == pytest.approx(SLOTS * found["ecpus_per_slot"] * 0.0023 / 1e6)
