"""The report: the cost model's rows for the results table, from the figures measured in this run.

The measured figures at each pair count; every line item of the default case and its total; how
the total grows with pairs, clients and a longer poll interval; and the default case with
CloudFront in front.
"""

from __future__ import annotations

from bench.common import Row
from bench.cost.model import (
    CDN_DISTINCT_URLS,
    CDN_EDGE_LOCATIONS,
    CDN_PASS_THROUGH_S,
    DATA_TRANSFER_FIRST_TIER_GB,
    DEFAULT_CLIENTS,
    DEFAULT_PAIRS,
    DEFAULT_POLL_INTERVAL_S,
    LAMBDA_PLATFORM_LOG_BYTES,
    LOG_COMPRESSED_SHARE,
    SECONDS_PER_MONTH,
    WHITELIST_FUNCTION_NOTE,
    LineItem,
    MeasuredFigures,
    cdn_origin_rps,
    limits_exceeded,
    monthly_cost,
    total_usd,
)

SCENARIO = "cost model"
GROWTH_CASES = ((20, 100), (20, 1_000), (20, 10_000), (100, 1_000), (400, 1_000))
LONGER_POLL_INTERVAL_S = 10.0  # one more case: the default load polling five times less often


def _case(pairs: int, clients: int, poll_interval_s: float) -> str:
    return f"{pairs} pairs, {clients:,} clients / {poll_interval_s:g} s"


def _rounded(value: float) -> float | int:
    if abs(value) >= 1000:
        return round(value)
    if abs(value) >= 10:
        return round(value, 1)
    return round(value, 3)


def _measured_rows(measured: MeasuredFigures) -> list[Row]:
    rows = []
    for figures in measured.by_pairs.values():
        rows.append(
            Row(
                SCENARIO,
                f"measured: {figures.pairs} pairs",
                {
                    "billed_ms": round(figures.billed_ms_per_request, 3),
                    "p50_ms": round(figures.duration_p50_ms, 3),
                    "p99_ms": round(figures.duration_p99_ms, 3),
                    "invocations": figures.invocations,
                    "body_bytes": round(figures.body_bytes),
                    "gzip_bytes": round(figures.gzip_body_bytes),
                    "response_bytes": round(figures.response_bytes),
                    "redis_bytes_per_read": round(figures.read_bytes),
                    "ecpus_per_read": round(figures.read_ecpus(), 2),
                    "redis_bytes_per_slot": round(figures.slot_bytes),
                    "redis_commands_per_slot": round(figures.slot_commands, 1),
                    "ecpus_per_slot": round(figures.slot_ecpus(), 1),
                    "ecpus_per_skipped_slot": round(figures.skipped_slot_ecpus(), 1),
                    "emf_bytes_per_99_requests": round(figures.emf_bytes_per_window),
                    "fetcher_log_bytes_per_slot": round(figures.fetcher_log_bytes_per_slot),
                    "exchange_bytes_per_slot": round(figures.ticker_bytes_per_slot),
                    "exchange_info_bytes": round(figures.exchange_info_bytes),
                    "registry_query_bytes": round(figures.registry_query_bytes),
                    "lkg_item_bytes": round(figures.lkg_item_bytes),
                },
                notes=[
                    "in-process duration on this machine, loopback redis without TLS: a floor for Lambda's"
                ],
            )
        )
    return rows


def _line_rows(measured: MeasuredFigures) -> list[Row]:
    case = _case(DEFAULT_PAIRS, DEFAULT_CLIENTS, DEFAULT_POLL_INTERVAL_S)
    items = monthly_cost(DEFAULT_PAIRS, DEFAULT_CLIENTS, DEFAULT_POLL_INTERVAL_S, measured)
    deployment = measured.deployment
    extra_notes = {
        "CloudWatch Logs: prices function": [
            f"prices function logging {deployment.prices_logging}: Lambda's platform lines "
            + (
                "dropped"
                if deployment.prices_platform_log_bytes == 0
                else f"kept, ~{LAMBDA_PLATFORM_LOG_BYTES} bytes per invocation (the platform's, not measured)"
            ),
            f"storage: {LOG_COMPRESSED_SHARE} of raw, {deployment.log_retention_days}-day retention",
        ],
        "CloudWatch Logs: API access log": [
            "one line per request: the HttpApi's AccessLogSettings Format rendered with the event's values"
        ],
        "CloudWatch Logs: fetcher": [
            f"EMF per slot measured; platform lines ~{LAMBDA_PLATFORM_LOG_BYTES} bytes per invocation assumed"
        ],
        "DynamoDB writes (last known good)": [measured.lkg_source, "each item < 1 KB: 1 WRU"],
        "DynamoDB reads (registry Query per slot)": [
            "Query without ConsistentRead: 0.5 RRU per 4 KB of the response (JSON, an upper bound)"
        ],
        "CloudWatch metrics, alarms, dashboard": [deployment.custom_metrics_note],
        "NAT gateway": [
            "exchange request lines and bodies measured at the simulator; TLS and headers not counted; "
            "the real exchangeInfo (all of Binance's symbols) is far larger than the simulator's"
        ],
    }
    rows = [
        Row(
            SCENARIO,
            f"{case}: {item.name}",
            {
                **{name: _rounded(value) for name, value in item.quantity.items()},
                "usd_month": round(item.usd_month, 2),
            },
            notes=[*item.notes, *extra_notes.get(item.name, [])],
        )
        for item in items
    ]
    rows.append(
        Row(
            SCENARIO,
            f"{case}: total",
            {
                "requests_month": round(DEFAULT_CLIENTS / DEFAULT_POLL_INTERVAL_S * SECONDS_PER_MONTH),
                "usd_month": round(total_usd(items), 2),
            },
            notes=[
                *limits_exceeded(DEFAULT_PAIRS, DEFAULT_CLIENTS, DEFAULT_POLL_INTERVAL_S, measured),
                WHITELIST_FUNCTION_NOTE,
                "list prices, us-east-1, on demand, no free tier",
            ],
        )
    )
    return rows


def _top_two(items: list[LineItem]) -> str:
    ranked = sorted(items, key=lambda item: item.usd_month, reverse=True)[:2]
    return "; ".join(f"{item.name} {item.usd_month:,.0f}" for item in ranked)


def _growth_rows(measured: MeasuredFigures) -> list[Row]:
    cases = [(pairs, clients, DEFAULT_POLL_INTERVAL_S) for pairs, clients in GROWTH_CASES]
    cases.append((DEFAULT_PAIRS, DEFAULT_CLIENTS, LONGER_POLL_INTERVAL_S))
    rows = []
    for pairs, clients, poll in cases:
        items = monthly_cost(pairs, clients, poll, measured)
        rows.append(
            Row(
                f"{SCENARIO} growth",
                _case(pairs, clients, poll),
                {
                    "requests_per_s": round(clients / poll),
                    "usd_month": round(total_usd(items), 2),
                    "top_two": _top_two(items),
                },
                notes=[*limits_exceeded(pairs, clients, poll, measured), *_tier_notes(items)],
            )
        )
    return rows


def _tier_notes(items: list[LineItem]) -> list[str]:
    out_gb = sum(
        item.quantity["gb_month"] for item in items if item.name == "Data transfer out to the internet"
    )
    if out_gb <= DATA_TRANSFER_FIRST_TIER_GB:
        return []
    return [
        f"{out_gb / 1024:.0f} TB out priced at the first tier: AWS's tiers above 10 TB a month are cheaper"
    ]


def _cdn_rows(measured: MeasuredFigures) -> list[Row]:
    case = _case(DEFAULT_PAIRS, DEFAULT_CLIENTS, DEFAULT_POLL_INTERVAL_S)
    without = monthly_cost(DEFAULT_PAIRS, DEFAULT_CLIENTS, DEFAULT_POLL_INTERVAL_S, measured)
    with_cdn = monthly_cost(DEFAULT_PAIRS, DEFAULT_CLIENTS, DEFAULT_POLL_INTERVAL_S, measured, cdn=True)
    client_rps = DEFAULT_CLIENTS / DEFAULT_POLL_INTERVAL_S
    origin_rps = min(client_rps, cdn_origin_rps(client_rps, measured.deployment.fetch_interval_s))
    assumption = (
        f"{CDN_EDGE_LOCATIONS} edge locations, {CDN_DISTINCT_URLS} URL, max-age the rest of the slot "
        f"once its tick has written, {CDN_PASS_THROUGH_S:g} s of each slot passed through: "
        f"the origin sees {origin_rps:.0f} req/s; origin to CloudFront transfer is free"
    )
    saving = total_usd(without) - total_usd(with_cdn)
    return [
        Row(
            f"{SCENARIO} CDN",
            f"{case}: without CDN",
            {"usd_month": round(total_usd(without), 2), "top_two": _top_two(without)},
        ),
        Row(
            f"{SCENARIO} CDN",
            f"{case}: CloudFront in front",
            {
                "origin_requests_per_s": round(origin_rps),
                "usd_month": round(total_usd(with_cdn), 2),
                "top_two": _top_two(with_cdn),
            },
            notes=[assumption, "CloudFront bills every client request and the gzip-compressed bytes"],
        ),
        Row(
            f"{SCENARIO} CDN",
            f"{case}: saving",
            {
                "usd_month": round(saving, 2),
                "share": round(saving / total_usd(without), 3),
            },
        ),
    ]


def table_rows(measured: MeasuredFigures) -> list[Row]:
    """Every row of the scenario, in the table's order."""
    return [
        *_measured_rows(measured),
        *_line_rows(measured),
        *_growth_rows(measured),
        *_cdn_rows(measured),
    ]
