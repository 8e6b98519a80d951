"""The cost model: list prices, stated assumptions, and the arithmetic of a month's bill.

``monthly_cost(pairs, clients, poll_interval_s, measured, cdn=...)`` is a plain function in which
every per-request, per-pair and per-slot figure is multiplied out explicitly, so it is plain how
each line grows; the figures it prices (``MeasuredFigures``) are defined here and filled by
``bench.cost.measure``. Everything not measured or read from template.yaml is a stated assumption
or a list price (``PRICES_USD``). Figures between the measured pair counts are interpolated
linearly. It runs past 300 lines because ``monthly_cost`` spells out every line item of the bill in
one function, so that the whole arithmetic reads top to bottom in one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TypeVar

T = TypeVar("T")  # a dataclass row of measured figures

# List prices, us-east-1, on demand, in USD. Check them against the AWS pricing pages before
# relying on the totals: prices change and differ by region.
PRICES_USD: dict[str, float] = {
    "lambda_arm64_per_gb_second": 0.0000133334,
    "lambda_per_million_requests": 0.20,
    "http_api_per_million_first_300m": 1.00,
    "http_api_per_million_after_300m": 0.90,
    "elasticache_valkey_per_gb_hour": 0.0837,
    "elasticache_valkey_minimum_gb": 0.1,  # 100 MB minimum of data stored
    "elasticache_valkey_per_million_ecpu": 0.0023,
    "dynamodb_per_million_wru": 0.625,
    "dynamodb_per_million_rru": 0.125,
    "logs_ingestion_per_gb": 0.50,
    "logs_storage_per_gb_month": 0.03,
    "custom_metric_per_month": 0.30,
    "alarm_per_month": 0.10,
    "dashboard_per_month": 3.00,
    "nat_gateway_per_hour": 0.045,
    "nat_gateway_per_gb": 0.045,
    "data_transfer_out_per_gb": 0.09,  # first 10 TB a month; later tiers are cheaper
    "cloudfront_per_10k_https_requests": 0.0100,
    "cloudfront_per_gb_out": 0.085,
    # API Gateway WebSocket APIs (push: bench/cost/push_model.py)
    "websocket_messages_per_million_first_1b": 1.00,
    "websocket_messages_per_million_after_1b": 0.80,
    "websocket_connection_minutes_per_million": 0.25,
}

HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
GB = 1024**3  # AWS bills GB as 2^30 bytes
HTTP_API_FIRST_TIER_REQUESTS = 300_000_000
DATA_TRANSFER_FIRST_TIER_GB = 10 * 1024

# The case the rows price first: 20 pairs, 1,000 clients each polling all of them every 2 s.
DEFAULT_PAIRS, DEFAULT_CLIENTS, DEFAULT_POLL_INTERVAL_S = 20, 1_000, 2.0

# Assumptions, each stated in the rows' notes.
LAMBDA_PLATFORM_LOG_BYTES = 320  # Lambda's START, END and REPORT lines in text format, per invocation
# ETag, Vary and Last-Modified on an answer (their names, values and line ends), beside the headers
# measured before the answers carried them; a 304 is these headers alone.
VALIDATOR_HEADER_BYTES = len(
    'ETag: W/"0f1e2d3c"\r\nVary: Accept-Encoding\r\nLast-Modified: Sun, 29 Nov 2026 21:00:00 GMT\r\n'
)
LOG_COMPRESSED_SHARE = 0.15  # CloudWatch Logs stores compressed data: about 0.15 of the raw bytes
CDN_EDGE_LOCATIONS = 20  # edge locations serving the clients
CDN_DISTINCT_URLS = 1  # every client asks for the same URL (all pairs)
# Of each slot, the time no cache may keep an answer (max-age=0): until the slot's tick has written,
# and the slot's last part-second (max-age is whole seconds, never past the slot). Together one
# second when the tick writes within its slot's first second (bench/freshness measures it).
CDN_PASS_THROUGH_S = 1.0
REJECTION_REASONS_ASSUMED = 4  # PairsRejectedByReason kinds are validation messages: not enumerable
ACCESS_LOG_LATENCY_MS = 12  # API Gateway's own latency in the access log line: two digits
WHITELIST_FUNCTION_NOTE = "whitelist function: a few requests a day, negligible"


# --- the figures it prices (bench.cost.measure fills them) -------------------------------------
@dataclass(frozen=True)
class PairCountFigures:
    """What was measured with ``pairs`` listed pairs."""

    pairs: int
    invocations: int
    billed_ms_per_request: float  # mean of max(1, ceil(ms)) over the invocations
    duration_p50_ms: float
    duration_p99_ms: float
    response_bytes: float  # status line, the handler's headers and the body
    body_bytes: float
    gzip_body_bytes: float
    read_bytes: float  # one prices request on the cache's wire (request + reply)
    read_commands: float
    window_bytes: float  # the metrics window a container shares every 99 requests
    window_commands: float
    emf_bytes_per_window: float  # stdout of the prices handler per 99 requests
    slot_bytes: float  # one owned fetcher slot on the cache's wire
    slot_commands: float
    skipped_slot_bytes: float  # an overlapping invocation's slot: heartbeat and a lost claim
    skipped_slot_commands: float
    fetcher_log_bytes_per_slot: float  # stdout of an owned slot
    fetcher_log_bytes_per_skipped_slot: float
    ticker_bytes_per_slot: float  # exchange traffic of one steady slot: request lines + bodies
    ticker_requests_per_slot: float
    exchange_info_bytes: float  # one exchangeInfo request line + body
    registry_queries_per_slot: float
    registry_query_bytes: float  # one Query response as sent by DynamoDB (JSON)
    lkg_item_bytes: float  # one last-known-good item in the BatchWriteItem request (JSON)
    cache_dataset_bytes: float  # INFO memory used_memory_dataset after the slots

    def read_ecpus(self) -> float:
        """ECPUs of one prices request: one HGETALL at max(1, ceil(kB)), plus its share of the
        metrics window (ceil(kB) + one per command)."""
        window = math.ceil(self.window_bytes / 1024) + self.window_commands
        return max(1, math.ceil(self.read_bytes / 1024)) + window / 99

    def slot_ecpus(self) -> float:
        return math.ceil(self.slot_bytes / 1024) + self.slot_commands

    def skipped_slot_ecpus(self) -> float:
        return math.ceil(self.skipped_slot_bytes / 1024) + self.skipped_slot_commands


@dataclass(frozen=True)
class DeploymentFigures:
    """What template.yaml (and the settings' defaults) configure."""

    prices_memory_gb: float
    fetcher_memory_gb: float
    fetcher_run_seconds: float
    schedule_period_s: float
    fetch_interval_s: float
    batch_size: int
    lkg_write_interval_ms: int
    exchange_info_refresh_s: float
    prices_platform_log_bytes: int  # 0 when the prices function's SystemLogLevel drops them
    prices_logging: str
    access_log_bytes: float
    alarms: int
    dashboards: int
    custom_metrics: int
    custom_metrics_note: str
    log_retention_days: int
    route_rate_limit: float
    ecpu_per_second_cap: float

    @property
    def overlapping_invocations(self) -> float:
        """Invocations running at once on average: each runs FETCHER_RUN_SECONDS, one starts per period."""
        return self.fetcher_run_seconds / self.schedule_period_s


@dataclass
class MeasuredFigures:
    by_pairs: dict[int, PairCountFigures]
    deployment: DeploymentFigures
    lkg_writes_per_pair_per_hour: float
    lkg_source: str

    def at(self, pairs: int) -> PairCountFigures:
        """The figures for ``pairs``: measured, or linear between (or beyond) the nearest two."""
        found = interpolated(self.by_pairs, pairs, key="pairs", fixed=("invocations",))
        return found if pairs in self.by_pairs else replace(found, invocations=0)


def interpolated(table: Mapping[int, T], at: int, *, key: str, fixed: tuple[str, ...] = ()) -> T:
    """``table[at]`` when measured, else every number linear between (or beyond) the nearest two
    measured rows; ``key`` takes ``at``, the ``fixed`` fields keep the lower row's value."""
    if at in table:
        return table[at]
    counts = sorted(table)
    below = [count for count in counts if count < at]
    above = [count for count in counts if count > at]
    if below and above:
        low, high = below[-1], above[0]
    elif above:
        low, high = above[0], above[1]
    else:
        low, high = below[-2], below[-1]
    a, b = table[low], table[high]
    share = (at - low) / (high - low)
    numbers = {
        field.name: getattr(a, field.name) + share * (getattr(b, field.name) - getattr(a, field.name))
        for field in fields(a)  # type: ignore[arg-type]
        if field.name != key and field.name not in fixed
    }
    return replace(a, **{key: at}, **numbers)  # type: ignore[type-var]


# --- the model ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LineItem:
    name: str
    quantity: dict[str, float]
    usd_month: float
    notes: tuple[str, ...] = ()


def _logs_usd(raw_bytes: float, retention_days: int) -> float:
    """Ingestion, plus storage: at steady state the log group holds ``retention_days`` of data."""
    stored_gb = raw_bytes / GB * LOG_COMPRESSED_SHARE * retention_days / (HOURS_PER_MONTH / 24)
    return (
        raw_bytes / GB * PRICES_USD["logs_ingestion_per_gb"]
        + stored_gb * PRICES_USD["logs_storage_per_gb_month"]
    )


def _http_api_usd(requests: float) -> float:
    first = min(requests, HTTP_API_FIRST_TIER_REQUESTS)
    return (
        first / 1e6 * PRICES_USD["http_api_per_million_first_300m"]
        + (requests - first) / 1e6 * PRICES_USD["http_api_per_million_after_300m"]
    )


def cdn_origin_rps(client_rps: float, slot_s: float) -> float:
    """What reaches the origin behind CloudFront: the requests of each slot's pass-through second,
    and one a slot per edge location per URL to fill its cache for the rest of the slot."""
    return client_rps * CDN_PASS_THROUGH_S / slot_s + CDN_EDGE_LOCATIONS * CDN_DISTINCT_URLS / slot_s


def monthly_cost(
    pairs: int,
    clients: int,
    poll_interval_s: float,
    measured: MeasuredFigures,
    *,
    cdn: bool = False,
    gzip: bool = False,
    revalidate: bool = False,
) -> list[LineItem]:
    """Every line of the month's bill for ``clients`` polling all ``pairs`` every ``poll_interval_s``.

    With ``cdn``, CloudFront answers the clients: the origin sees one request per slot per edge
    location per URL, and every request of the slot's second that no cache may keep an answer.
    With ``gzip`` the clients ask for gzip and bodies leave compressed; with ``revalidate`` they
    send back the ETag, and every poll after the first in a slot is a 304 with no body.
    """
    figures, deployment, price = measured.at(pairs), measured.deployment, PRICES_USD
    client_rps = clients / poll_interval_s
    origin_rps = client_rps
    if cdn:
        origin_rps = min(client_rps, cdn_origin_rps(client_rps, deployment.fetch_interval_s))
    requests = origin_rps * SECONDS_PER_MONTH
    client_requests = client_rps * SECONDS_PER_MONTH
    slots = SECONDS_PER_MONTH / deployment.fetch_interval_s
    batches = math.ceil(pairs / deployment.batch_size)
    # One invocation owns each slot; the others running then heartbeat and skip it.
    other_invocations = max(deployment.overlapping_invocations - 1, 0.0)
    fetcher_invocations = SECONDS_PER_MONTH / deployment.schedule_period_s
    items: list[LineItem] = []

    items.append(
        LineItem(
            "API Gateway HTTP API requests",
            {"requests_month": requests},
            _http_api_usd(requests),
        )
    )
    items.append(
        LineItem(
            "Lambda prices: requests",
            {"requests_month": requests},
            requests / 1e6 * price["lambda_per_million_requests"],
        )
    )
    prices_gb_s = requests * figures.billed_ms_per_request / 1000 * deployment.prices_memory_gb
    items.append(
        LineItem(
            "Lambda prices: duration",
            {"billed_ms_per_request": figures.billed_ms_per_request, "gb_s_month": prices_gb_s},
            prices_gb_s * price["lambda_arm64_per_gb_second"],
            ("in-process on this machine: on Lambda the cache is a TLS round trip away, so more",),
        )
    )
    fetcher_gb_s = fetcher_invocations * deployment.fetcher_run_seconds * deployment.fetcher_memory_gb
    items.append(
        LineItem(
            "Lambda fetcher",
            {"invocations_month": fetcher_invocations, "gb_s_month": fetcher_gb_s},
            fetcher_gb_s * price["lambda_arm64_per_gb_second"]
            + fetcher_invocations / 1e6 * price["lambda_per_million_requests"],
            (
                f"{deployment.overlapping_invocations:.2f} invocations run at once "
                f"({deployment.fetcher_run_seconds:.0f} s each, one every "
                f"{deployment.schedule_period_s:.0f} s): "
                f"{deployment.overlapping_invocations:.1f}x one always-on loop",
            ),
        )
    )
    stored_gb = max(figures.cache_dataset_bytes / GB, price["elasticache_valkey_minimum_gb"])
    items.append(
        LineItem(
            "ElastiCache data stored",
            {"gb_hours_month": stored_gb * HOURS_PER_MONTH, "dataset_bytes": figures.cache_dataset_bytes},
            stored_gb * HOURS_PER_MONTH * price["elasticache_valkey_per_gb_hour"],
            ("billed at the 100 MB minimum",) if stored_gb == price["elasticache_valkey_minimum_gb"] else (),
        )
    )
    read_ecpus = requests * figures.read_ecpus()
    slot_ecpus = slots * (figures.slot_ecpus() + other_invocations * figures.skipped_slot_ecpus())
    items.append(
        LineItem(
            "ElastiCache ECPUs",
            {
                "ecpus_month": read_ecpus + slot_ecpus,
                "ecpus_per_read": figures.read_ecpus(),
                "ecpus_per_slot": figures.slot_ecpus(),
                "ecpus_per_second": (read_ecpus + slot_ecpus) / SECONDS_PER_MONTH,
            },
            (read_ecpus + slot_ecpus) / 1e6 * price["elasticache_valkey_per_million_ecpu"],
            (
                "a read: max(1, ceil(kB)) for its HGETALL plus 1/99 of a metrics window; a slot: "
                "ceil(kB) + one per command (INFO commandstats, MULTI/EXEC included: an upper bound)",
            ),
        )
    )
    lkg_wru_per_item = max(1, math.ceil(figures.lkg_item_bytes / 1024))
    wru = pairs * measured.lkg_writes_per_pair_per_hour * HOURS_PER_MONTH * lkg_wru_per_item
    items.append(
        LineItem(
            "DynamoDB writes (last known good)",
            {"wru_month": wru},
            wru / 1e6 * price["dynamodb_per_million_wru"],
        )
    )
    # Query without ConsistentRead: eventually consistent, 0.5 RRU per 4 KB read.
    rru = (
        slots
        * figures.registry_queries_per_slot
        * 0.5
        * max(1, math.ceil(figures.registry_query_bytes / 4096))
    )
    items.append(
        LineItem(
            "DynamoDB reads (registry Query per slot)",
            {"rru_month": rru},
            rru / 1e6 * price["dynamodb_per_million_rru"],
        )
    )
    prices_log_bytes = requests * (figures.emf_bytes_per_window / 99 + deployment.prices_platform_log_bytes)
    items.append(
        LineItem(
            "CloudWatch Logs: prices function",
            {
                "gb_month": prices_log_bytes / GB,
                "emf_bytes_per_request": figures.emf_bytes_per_window / 99,
                "platform_bytes_per_request": deployment.prices_platform_log_bytes,
            },
            _logs_usd(prices_log_bytes, deployment.log_retention_days),
        )
    )
    access_log_bytes = requests * deployment.access_log_bytes
    items.append(
        LineItem(
            "CloudWatch Logs: API access log",
            {"gb_month": access_log_bytes / GB, "bytes_per_request": deployment.access_log_bytes},
            _logs_usd(access_log_bytes, deployment.log_retention_days),
        )
    )
    fetcher_log_bytes = (
        slots
        * (
            figures.fetcher_log_bytes_per_slot
            + other_invocations * figures.fetcher_log_bytes_per_skipped_slot
        )
        + fetcher_invocations * LAMBDA_PLATFORM_LOG_BYTES
    )
    items.append(
        LineItem(
            "CloudWatch Logs: fetcher",
            {"gb_month": fetcher_log_bytes / GB},
            _logs_usd(fetcher_log_bytes, deployment.log_retention_days),
        )
    )
    metrics_usd = (
        deployment.custom_metrics * price["custom_metric_per_month"]
        + deployment.alarms * price["alarm_per_month"]
        + deployment.dashboards * price["dashboard_per_month"]
    )
    items.append(
        LineItem(
            "CloudWatch metrics, alarms, dashboard",
            {
                "custom_metrics": deployment.custom_metrics,
                "alarms": deployment.alarms,
                "dashboards": deployment.dashboards,
            },
            metrics_usd,
        )
    )
    exchange_info_reads = SECONDS_PER_MONTH / deployment.exchange_info_refresh_s
    nat_bytes = slots * figures.ticker_bytes_per_slot + exchange_info_reads * figures.exchange_info_bytes
    items.append(
        LineItem(
            "NAT gateway",
            {
                "hours": HOURS_PER_MONTH,
                "gb_month": nat_bytes / GB,
                "ticker_requests_per_slot": batches,
            },
            HOURS_PER_MONTH * price["nat_gateway_per_hour"] + nat_bytes / GB * price["nat_gateway_per_gb"],
        )
    )
    if cdn:
        # Origin to CloudFront is free from AWS origins; CloudFront bills every client request
        # and the compressed bytes it sends.
        cdn_bytes = client_requests * figures.gzip_body_bytes
        items.append(
            LineItem(
                "CloudFront requests",
                {"requests_month": client_requests},
                client_requests / 10_000 * price["cloudfront_per_10k_https_requests"],
            )
        )
        items.append(
            LineItem(
                "CloudFront data transfer out (gzip)",
                {"gb_month": cdn_bytes / GB},
                cdn_bytes / GB * price["cloudfront_per_gb_out"],
            )
        )
    else:
        headers = figures.response_bytes - figures.body_bytes + VALIDATOR_HEADER_BYTES
        full = headers + (figures.gzip_body_bytes if gzip else figures.body_bytes)
        share_304 = max(0.0, 1 - poll_interval_s / deployment.fetch_interval_s) if revalidate else 0.0
        per_response = share_304 * headers + (1 - share_304) * full
        out_bytes = requests * per_response
        items.append(
            LineItem(
                "Data transfer out to the internet",
                {"gb_month": out_bytes / GB, "bytes_per_response": per_response, "share_304": share_304},
                out_bytes / GB * price["data_transfer_out_per_gb"],
                (
                    ("gzip bodies (the handler compresses what the client accepts)" if gzip else
                     "bodies as the handler wrote them: clients that do not ask for gzip"),
                ),
            )
        )  # fmt: skip
    return items


def total_usd(items: list[LineItem]) -> float:
    return sum(item.usd_month for item in items)


def limits_exceeded(pairs: int, clients: int, poll_interval_s: float, measured: MeasuredFigures) -> list[str]:
    """The template's own caps this load would hit: the model prices the load as if raised."""
    deployment = measured.deployment
    notes = []
    rps = clients / poll_interval_s
    if rps > deployment.route_rate_limit:
        notes.append(
            f"{rps:.0f} req/s exceeds the route throttle ApiThrottlingRateLimit "
            f"{deployment.route_rate_limit:.0f}/s: API Gateway answers 429 to the rest unless it is raised"
        )
    ecpu_rate = next(
        item.quantity["ecpus_per_second"]
        for item in monthly_cost(pairs, clients, poll_interval_s, measured)
        if item.name == "ElastiCache ECPUs"
    )
    if ecpu_rate > deployment.ecpu_per_second_cap:
        notes.append(
            f"{ecpu_rate:.0f} ECPU/s exceeds the cache's ECPUPerSecond cap "
            f"{deployment.ecpu_per_second_cap:.0f}: the cache throttles unless it is raised"
        )
    return notes
