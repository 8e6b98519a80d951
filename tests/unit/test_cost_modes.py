"""The polling modes the cost model compares: gzip, revalidation with 304s, behind the CDN."""

from __future__ import annotations

import dataclasses

import pytest

from bench.cost.model import (
    VALIDATOR_HEADER_BYTES,
    DeploymentFigures,
    MeasuredFigures,
    PairCountFigures,
    monthly_cost,
    total_usd,
)

SECONDS = 730 * 3600


def figures() -> MeasuredFigures:
    pairs = PairCountFigures(**{f.name: 1.0 for f in dataclasses.fields(PairCountFigures)})
    pairs = dataclasses.replace(pairs, pairs=20, invocations=100, response_bytes=6_000.0, body_bytes=5_900.0,
                                gzip_body_bytes=1_200.0, billed_ms_per_request=1.0)  # fmt: skip
    deployment = DeploymentFigures(
        prices_memory_gb=0.5, fetcher_memory_gb=0.5, fetcher_run_seconds=130, schedule_period_s=60,
        fetch_interval_s=4.0, batch_size=20, lkg_write_interval_ms=60_000, exchange_info_refresh_s=300,
        prices_platform_log_bytes=0, prices_logging="JSON", access_log_bytes=246, alarms=6, dashboards=1,
        custom_metrics=54, custom_metrics_note="", log_retention_days=30, route_rate_limit=1000,
        ecpu_per_second_cap=15000,
    )  # fmt: skip
    return MeasuredFigures({20: pairs}, deployment, 60.0, "bound")


def out(clients: int, poll_s: float, **mode: bool) -> dict[str, float]:
    items = monthly_cost(20, clients, poll_s, figures(), **mode)
    return next(item.quantity for item in items if item.name == "Data transfer out to the internet")


def test_gzip_bodies_leave_compressed_with_the_validators_headers() -> None:
    plain, zipped = out(1_000, 2.0), out(1_000, 2.0, gzip=True)
    assert plain["bytes_per_response"] == 6_000.0 - 5_900.0 + VALIDATOR_HEADER_BYTES + 5_900.0
    assert zipped["bytes_per_response"] == 100.0 + VALIDATOR_HEADER_BYTES + 1_200.0


def test_revalidating_every_2_s_against_4_s_slots_makes_half_the_answers_304s() -> None:
    found = out(1_000, 2.0, gzip=True, revalidate=True)
    headers = 100.0 + VALIDATOR_HEADER_BYTES
    assert found["share_304"] == 0.5
    assert found["bytes_per_response"] == pytest.approx(0.5 * headers + 0.5 * (headers + 1_200.0))
    assert out(1_000, 4.0, revalidate=True)["share_304"] == 0.0  # one poll a slot: every answer new
    assert out(1_000, 1.0, revalidate=True)["share_304"] == 0.75


def test_each_mode_costs_less_than_plain_polling_and_requests_are_billed_alike() -> None:
    plain = total_usd(monthly_cost(20, 1_000, 2.0, figures()))
    revalidating = total_usd(monthly_cost(20, 1_000, 2.0, figures(), gzip=True, revalidate=True))
    assert revalidating < plain
    requests = [
        next(
            i
            for i in monthly_cost(20, 1_000, 2.0, figures(), **mode)
            if i.name == "API Gateway HTTP API requests"
        )
        for mode in ({}, {"gzip": True, "revalidate": True})
    ]
    assert requests[0].quantity == requests[1].quantity == {"requests_month": 1_000 / 2.0 * SECONDS}
