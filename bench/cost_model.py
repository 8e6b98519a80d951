"""Cost model: the monthly AWS bill of the default deployment, from figures measured in this run.

The case: 20 pairs, 1,000 clients each polling GET /api/market-data/prices (all pairs: no
``pairs`` parameter, the request of events/prices_all.json) every 2 s, i.e. 500 requests a second.

What is measured here, with the production handlers against a redis-server, moto over HTTP and
the Binance simulator, at 20, 100 and 400 listed pairs (the cache filled by real fetcher slots):
- the prices handler's in-process duration over many invocations with the real API Gateway
  event: Lambda bills per 1 ms, so the billed duration of a request is max(1, ceil(ms));
- the response: body and header bytes as the handler returns them, and the gzip-compressed body
  (what a CDN that compresses sends);
- bytes on the cache's wire (redis ``INFO stats``: total_net_input_bytes + total_net_output_bytes)
  and commands (``INFO commandstats``) per read, per metrics window (one every 99 requests), per
  fetcher slot owned and per slot another overlapping invocation only heartbeats and skips;
- CloudWatch Logs bytes: the EMF documents the prices handler prints per 99 requests and the
  fetcher prints per slot (stdout captured);
- the exchange's answers through the NAT: request line and response body of every request the
  fetcher's slots send to the simulator (tickers every slot, exchangeInfo on a container's first);
- DynamoDB: Queries per slot and their response size, and the size of each last-known-good item,
  on the fetcher's own client.

What is read from template.yaml when the scenario runs: memory sizes, FETCHER_RUN_SECONDS, the
schedule, the fetch interval, the batch size, the last-known-good write interval, the prices
function's LoggingConfig (whether Lambda's START/END/REPORT lines are kept), the API access log
format, alarms, dashboards, log retention, the route throttle and the cache's ECPU cap.

Everything else is a stated assumption or a list price (``PRICES_USD``). The model itself is
``monthly_cost(pairs, clients, poll_interval_s, measured, cdn=...)``: a plain function in which
every per-request, per-pair and per-slot figure is multiplied out explicitly, so it is plain how
each line grows. Figures between the measured pair counts are interpolated linearly.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from statistics import fmean
from typing import Any
from unittest import mock

from bench.common import (
    REPO_ROOT,
    Row,
    Stack,
    apply_environment,
    generated_pairs,
    percentile,
    quiet_stdout,
    real_parts,
    service_environment,
)

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
}

SCENARIO = "cost model"
HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
GB = 1024**3  # AWS bills GB as 2^30 bytes
HTTP_API_FIRST_TIER_REQUESTS = 300_000_000
DATA_TRANSFER_FIRST_TIER_GB = 10 * 1024

DEFAULT_PAIRS, DEFAULT_CLIENTS, DEFAULT_POLL_INTERVAL_S = 20, 1_000, 2.0
# The pair counts measured: the growth cases' own, so their rows use measured figures.
MEASURED_PAIR_COUNTS = (20, 100, 400)
# Enough samples for a stable mean at 20 pairs; fewer where each call is longer, to stay quick.
DURATION_INVOCATIONS = {20: 2_000, 100: 500, 400: 200}
WARM_UP_INVOCATIONS = 50
STEADY_SLOTS = 3
GROWTH_CASES = ((20, 100), (20, 1_000), (20, 10_000), (100, 1_000), (400, 1_000))
LONGER_POLL_INTERVAL_S = 10.0  # one more case: the default load polling five times less often

# Assumptions, each stated in the rows' notes.
LAMBDA_PLATFORM_LOG_BYTES = 320  # Lambda's START, END and REPORT lines in text format, per invocation
LOG_COMPRESSED_SHARE = 0.15  # CloudWatch Logs stores compressed data: about 0.15 of the raw bytes
CDN_EDGE_LOCATIONS = 20  # edge locations serving the clients
CDN_DISTINCT_URLS = 1  # every client asks for the same URL (all pairs)
CACHE_MAX_AGE_S = 1.0  # the response's Cache-Control: public, max-age=1
REJECTION_REASONS_ASSUMED = 4  # PairsRejectedByReason kinds are validation messages: not enumerable
ACCESS_LOG_LATENCY_MS = 12  # API Gateway's own latency in the access log line: two digits
WHITELIST_FUNCTION_NOTE = "whitelist function: a few requests a day, negligible"

# The snapshots' own INFO commands are not the service's traffic.
COMMANDSTATS_IGNORED = {"info"}
# The kinds the fetcher's exchange code raises ExchangeError with (literal, or either side of an
# ``x if ... else y``): each is a metric of its own in the ExchangeErrorsByKind breakdown.
EXCHANGE_ERROR_KIND = re.compile(
    r'(?:ExchangeError\(|super\(\)\.__init__\(|kind = )"([a-z0-9_]+)"(?: if [^"\n]+ else "([a-z0-9_]+)")?'
)
CONTEXT_VARIABLE = re.compile(r"\$context\.([A-Za-z.]+)")  # in the API access log format
SERVICE_NAME = re.compile(r'(?:RequestMetrics\(|SERVICE = )"([a-z-]+)"')
FUNCTION_PACKAGES = (
    "functions/fetcher/fetcher",
    "functions/prices_api/prices_api",
    "functions/whitelist/whitelist",
)


# --- measured figures --------------------------------------------------------------------------
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
        if pairs in self.by_pairs:
            return self.by_pairs[pairs]
        counts = sorted(self.by_pairs)
        below = [count for count in counts if count < pairs]
        above = [count for count in counts if count > pairs]
        if below and above:
            low, high = below[-1], above[0]
        elif above:
            low, high = above[0], above[1]
        else:
            low, high = below[-2], below[-1]
        a, b = self.by_pairs[low], self.by_pairs[high]
        share = (pairs - low) / (high - low)
        numbers = {
            name: getattr(a, name) + share * (getattr(b, name) - getattr(a, name))
            for name in a.__dataclass_fields__
            if name not in ("pairs", "invocations")
        }
        return replace(a, pairs=pairs, invocations=0, **numbers)


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


def monthly_cost(
    pairs: int, clients: int, poll_interval_s: float, measured: MeasuredFigures, *, cdn: bool = False
) -> list[LineItem]:
    """Every line of the month's bill for ``clients`` polling all ``pairs`` every ``poll_interval_s``.

    With ``cdn``, CloudFront answers the clients and the origin sees at most one request per
    second per edge location per URL (Cache-Control: public, max-age=1).
    """
    figures, deployment, price = measured.at(pairs), measured.deployment, PRICES_USD
    client_rps = clients / poll_interval_s
    origin_rps = client_rps
    if cdn:
        origin_rps = min(client_rps, CDN_EDGE_LOCATIONS * CDN_DISTINCT_URLS / CACHE_MAX_AGE_S)
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
        out_bytes = requests * figures.response_bytes
        items.append(
            LineItem(
                "Data transfer out to the internet",
                {"gb_month": out_bytes / GB, "bytes_per_response": figures.response_bytes},
                out_bytes / GB * price["data_transfer_out_per_gb"],
                ("HTTP APIs do not compress: the body leaves as the handler wrote it",),
            )
        )
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


# --- measuring ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class WireSnapshot:
    bytes: int
    commands: int


class CacheWire:
    """Bytes and commands the redis-server saw, from its own INFO counters.

    INFO's request and reply are themselves counted by the server: the cost of one snapshot is
    measured with nothing in between and taken off every delta.
    """

    def __init__(self, url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url)
        self._overhead = WireSnapshot(0, 0)
        first = self.snapshot()
        second = self.snapshot()
        third = self.snapshot()
        self._overhead = WireSnapshot(
            max(second.bytes - first.bytes, third.bytes - second.bytes),
            max(second.commands - first.commands, third.commands - second.commands),
        )

    def snapshot(self) -> WireSnapshot:
        stats: dict[str, Any] = self._client.info("stats")  # type: ignore[assignment]  # sync client
        commands: dict[str, Any] = self._client.info("commandstats")  # type: ignore[assignment]
        calls = sum(
            int(entry["calls"])
            for name, entry in commands.items()
            if name.removeprefix("cmdstat_") not in COMMANDSTATS_IGNORED
        )
        return WireSnapshot(int(stats["total_net_input_bytes"]) + int(stats["total_net_output_bytes"]), calls)

    def since(self, before: WireSnapshot) -> WireSnapshot:
        after = self.snapshot()
        return WireSnapshot(
            after.bytes - before.bytes - self._overhead.bytes,
            after.commands - before.commands - self._overhead.commands,
        )

    def dataset_bytes(self) -> int:
        memory: dict[str, Any] = self._client.info("memory")  # type: ignore[assignment]
        return int(memory["used_memory_dataset"])

    def close(self) -> None:
        self._client.close()


@dataclass
class ExchangeWire:
    """Every request the fetcher sends to the simulator: path, request-line bytes, body bytes."""

    records: list[tuple[str, int]] = field(default_factory=list)

    @contextlib.contextmanager
    def watching(self, simulator: Any) -> Iterator[None]:
        production_handle = simulator.handle

        def handle_and_count(method: str, path: str, query: str = "", body: bytes = b"") -> Any:
            reply = production_handle(method, path, query, body)
            # What the NAT carries besides TLS and headers: the request line and the body.
            self.records.append((path, len(method) + len(path) + len(query) + len(reply.body) + 2))
            return reply

        with mock.patch.object(simulator, "handle", handle_and_count):
            yield

    def take(self) -> list[tuple[str, int]]:
        taken, self.records = self.records, []
        return taken


@dataclass
class DynamoWire:
    """The fetcher's DynamoDB traffic on its own client: Queries and their size, items written."""

    queries: int = 0
    query_bytes: list[int] = field(default_factory=list)
    lkg_item_bytes: list[int] = field(default_factory=list)

    def before_call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if model.name == "Query":
            self.queries += 1
        elif model.name == "BatchWriteItem":
            body = json.loads(params.get("body") or b"{}")
            for requests in body["RequestItems"].values():
                for request in requests:
                    item = request.get("PutRequest", {}).get("Item")
                    if item and item["pk"]["S"] == "LKG":
                        self.lkg_item_bytes.append(len(json.dumps(item, separators=(",", ":"))))

    def after_call(self, http_response: Any, model: Any, **_: Any) -> None:
        if model.name == "Query":
            self.query_bytes.append(len(http_response.content))

    @contextlib.contextmanager
    def watching(self, table: Any) -> Iterator[None]:
        events = table.meta.client.meta.events
        events.register("before-call.dynamodb", self.before_call)
        events.register("after-call.dynamodb", self.after_call)
        try:
            yield
        finally:
            events.unregister("before-call.dynamodb", self.before_call)
            events.unregister("after-call.dynamodb", self.after_call)


@contextlib.contextmanager
def captured_stdout() -> Iterator[io.StringIO]:
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        yield sink


def _utf8_len(text: str) -> int:
    return len(text.encode())


def _response_bytes(result: Mapping[str, Any]) -> tuple[int, int]:
    """(status line + headers + body, body) of an HTTP API result, as the client receives them."""
    body = _utf8_len(result["body"])
    headers = {**result.get("headers", {}), "content-length": str(body)}
    head = "HTTP/1.1 200 OK\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    return _utf8_len(head) + body, body


def _measure_pair_count(
    stack: Stack, pair_count: int, slots: Iterator[int]
) -> tuple[PairCountFigures, dict[str, set[str]]]:
    """A new deployment with ``pair_count`` pairs: registry, cache and container all new; and the
    metric names the fetcher and the prices handler printed, by service."""
    import redis

    from local_stack.servers import create_table_from_template

    table = f"market-data-bench-{uuid.uuid4().hex[:8]}"
    create_table_from_template(stack.dynamodb_url, table)
    with contextlib.closing(redis.Redis.from_url(stack.redis_url)) as client:
        client.flushall()
    apply_environment(service_environment(stack, generated_pairs(pair_count), MARKET_DATA_TABLE_NAME=table))
    cache_wire = CacheWire(stack.redis_url)
    try:
        fetcher, fetcher_printed = _measure_fetcher(stack, cache_wire, slots)
        prices, prices_printed = _measure_prices(pair_count, cache_wire)
    finally:
        cache_wire.close()
    figures = PairCountFigures(pairs=pair_count, **fetcher, **prices)
    return figures, emitted_metrics(fetcher_printed + "\n" + prices_printed)


def _measure_fetcher(stack: Stack, cache_wire: CacheWire, slots: Iterator[int]) -> tuple[dict[str, Any], str]:
    """The fetcher's figures (PairCountFigures fields) from real slots, and what they printed."""
    from fetcher.handler import build_deps
    from fetcher.loop import LoopSummary, run_slot
    from market_data.config import load_settings

    deps = build_deps(load_settings())
    exchange, dynamo = ExchangeWire(), DynamoWire()
    steady: list[tuple[WireSnapshot, str, list[tuple[str, int]]]] = []  # cache, stdout, exchange
    try:
        with exchange.watching(stack.simulator), dynamo.watching(deps.table):
            # A new deployment's first slot seeds the registry, reads exchangeInfo and writes
            # every pair's last known good: measured for the item size and exchangeInfo only.
            with quiet_stdout():
                run_slot(deps, next(slots), "bench-cost-model", LoopSummary())
            exchange_info = [size for path, size in exchange.take() if "exchangeInfo" in path]
            dynamo.queries, dynamo.query_bytes = 0, []
            for _ in range(STEADY_SLOTS):
                slot = next(slots)
                before = cache_wire.snapshot()
                with captured_stdout() as printed:
                    run_slot(deps, slot, "bench-cost-model", LoopSummary())
                steady.append((cache_wire.since(before), printed.getvalue(), exchange.take()))
            # The same slot again from another invocation: the claim is taken, so it only
            # heartbeats and skips, as overlapping invocations do in every slot they do not own.
            before = cache_wire.snapshot()
            summary = LoopSummary()
            with captured_stdout() as skipped_printed:
                run_slot(deps, slot, "bench-cost-model-overlap", summary)
            skipped = cache_wire.since(before)
        if summary.skipped_claimed_elsewhere != 1:
            raise RuntimeError(f"the overlapping invocation did not skip: {summary.as_dict()}")
        dataset_bytes = cache_wire.dataset_bytes()
    finally:
        deps.close()
        deps.redis.close()
    if not exchange_info or not dynamo.lkg_item_bytes or not dynamo.query_bytes:
        raise RuntimeError("the first slot read no exchangeInfo, or wrote no last known good")
    figures = {
        "slot_bytes": fmean([wire.bytes for wire, _, _ in steady]),
        "slot_commands": fmean([wire.commands for wire, _, _ in steady]),
        "skipped_slot_bytes": skipped.bytes,
        "skipped_slot_commands": skipped.commands,
        "fetcher_log_bytes_per_slot": fmean([_utf8_len(text) for _, text, _ in steady]),
        "fetcher_log_bytes_per_skipped_slot": _utf8_len(skipped_printed.getvalue()),
        "ticker_bytes_per_slot": fmean([sum(size for _, size in sent) for _, _, sent in steady]),
        "ticker_requests_per_slot": fmean([len(sent) for _, _, sent in steady]),
        "exchange_info_bytes": exchange_info[0],
        "registry_queries_per_slot": dynamo.queries / STEADY_SLOTS,
        "registry_query_bytes": fmean(dynamo.query_bytes),
        "lkg_item_bytes": fmean(dynamo.lkg_item_bytes),
        "cache_dataset_bytes": dataset_bytes,
    }
    printed_text = "\n".join([*(text for _, text, _ in steady), skipped_printed.getvalue()])
    return figures, printed_text


def _measure_prices(pair_count: int, cache_wire: CacheWire) -> tuple[dict[str, Any], str]:
    """The prices handler's figures (PairCountFigures fields) with the real all-pairs event, and
    the EMF document it printed for 99 requests."""
    import prices_api.handler as prices
    from local_stack.lambda_context import LocalLambdaContext
    from tests.support import load_event

    event = load_event("prices_all.json")
    if event.get("queryStringParameters") or event.get("rawQueryString"):
        raise RuntimeError("events/prices_all.json asks for some pairs; the model is for all pairs")
    context = LocalLambdaContext("PricesApiFunction", 6)
    with quiet_stdout():  # a window left by the previous case may end here and print
        answer = prices.lambda_handler(event, context)
    served = len(json.loads(answer["body"])) if answer["statusCode"] == 200 else 0
    if served != pair_count:
        raise RuntimeError(f"{pair_count} pairs: HTTP {answer['statusCode']}, {served} pairs served")
    response_bytes, body_bytes = _response_bytes(answer)

    def invoke() -> None:
        prices.lambda_handler(event, context)

    invocations = DURATION_INVOCATIONS[pair_count]
    with quiet_stdout():
        for _ in range(WARM_UP_INVOCATIONS):
            invoke()
        durations_ms = _durations_ms(invoke, invocations)
        prices.read_metrics.flush()  # a new window starts with the next request
    # 99 requests: the 99th ends the window, so this is one document and one shared window.
    before = cache_wire.snapshot()
    with captured_stdout() as printed:
        for _ in range(99):
            invoke()
    ninety_nine = cache_wire.since(before)
    # The window alone: 98 reads, then the flush on its own between two snapshots.
    with quiet_stdout():
        for _ in range(98):
            invoke()
        before = cache_wire.snapshot()
        prices.read_metrics.flush()
    window = cache_wire.since(before)
    figures = {
        "invocations": invocations,
        "billed_ms_per_request": fmean([max(1, math.ceil(ms)) for ms in durations_ms]),
        "duration_p50_ms": percentile(durations_ms, 0.5),
        "duration_p99_ms": percentile(durations_ms, 0.99),
        "response_bytes": response_bytes,
        "body_bytes": body_bytes,
        "gzip_body_bytes": len(gzip.compress(answer["body"].encode(), compresslevel=6)),
        "read_bytes": (ninety_nine.bytes - window.bytes) / 99,
        "read_commands": (ninety_nine.commands - window.commands) / 99,
        "window_bytes": window.bytes,
        "window_commands": window.commands,
        "emf_bytes_per_window": _utf8_len(printed.getvalue()),
    }
    return figures, printed.getvalue()


def _durations_ms(call: Callable[[], None], iterations: int) -> list[float]:
    samples = []
    for _ in range(iterations):
        started = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - started) / 1e6)
    return samples


# --- what the template configures ---------------------------------------------------------------
def _parameter_default(template: Mapping[str, Any], value: Any) -> Any:
    """A literal, or the default of the parameter a ``!Ref`` names."""
    if isinstance(value, dict) and "Ref" in value:
        return template["Parameters"][value["Ref"]]["Default"]
    return value


def _rate_seconds(expression: str) -> float:
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours)\)", expression.strip())
    if not match:
        raise ValueError(f"unexpected schedule {expression!r}")
    return int(match.group(1)) * (60 if match.group(2).startswith("minute") else 3600)


def _access_log_bytes(format_text: str, body_bytes: float) -> float:
    """The access log line the HttpApi's Format renders for a prices request (values from
    events/prices_all.json; an empty value renders as '-', as API Gateway writes it)."""
    from tests.support import load_event

    event = load_event("prices_all.json")
    context = event["requestContext"]
    values = {
        "requestId": context["requestId"],
        "identity.sourceIp": context["http"]["sourceIp"],
        "requestTime": context["time"],
        "routeKey": event["routeKey"],
        "status": "200",
        "responseLength": str(round(body_bytes)),
        "responseLatency": str(ACCESS_LOG_LATENCY_MS),
        "integrationLatency": str(ACCESS_LOG_LATENCY_MS),
    }
    line = CONTEXT_VARIABLE.sub(lambda match: values.get(match.group(1), "-"), format_text.strip())
    return _utf8_len(line) + 1  # the newline


def emitted_metrics(printed: str) -> dict[str, set[str]]:
    """Metric names by ``service`` in EMF documents as printed (breakdowns, with ``kind``, left out)."""
    from market_data.observability import BREAKDOWN_DIMENSION

    names: dict[str, set[str]] = {}
    for line in printed.splitlines():
        if not line.startswith("{"):
            continue
        document = json.loads(line)
        directives = document.get("_aws", {}).get("CloudWatchMetrics", [])
        for directive in directives:
            if any(BREAKDOWN_DIMENSION in dimensions for dimensions in directive["Dimensions"]):
                continue
            names.setdefault(document["service"], set()).update(m["Name"] for m in directive["Metrics"])
    return names


def _custom_metrics(seen: Mapping[str, set[str]]) -> tuple[int, str]:
    """Distinct (metric, dimensions) the functions can emit. Per function: the names printed in
    this run, and the UNITS names its source passes as a literal or a keyword (plus the response
    classes every RequestMetrics user counts); one metric per kind for the breakdowns."""
    import inspect

    from market_data.observability import BREAKDOWN_DIMENSION, UNITS, RequestMetrics

    def named_in(source: str) -> set[str]:
        return {name for name in UNITS if re.search(rf'"{name}"|\b{name}=', source)}

    response_names = named_in(inspect.getsource(RequestMetrics.record_response))
    # The breakdowns carry the extra dimension ``kind``: their names end in ByKind / ByReason.
    breakdowns = {name for name in UNITS if name.endswith(("ByKind", "ByReason"))}
    per_function: dict[str, int] = {}
    for package in FUNCTION_PACKAGES:
        source = "\n".join(path.read_text() for path in sorted((REPO_ROOT / package).glob("*.py")))
        service = SERVICE_NAME.search(source)
        if service is None:
            raise RuntimeError(f"{package}: no metrics service name found")
        names = (named_in(source) | seen.get(service.group(1), set())) - breakdowns
        if "RequestMetrics(" in source:
            names |= response_names
        per_function[service.group(1)] = len(names)
    fetcher_source = "\n".join(
        (REPO_ROOT / "functions/fetcher/fetcher" / name).read_text() for name in ("binance.py", "tick.py")
    )
    error_kinds = {kind for match in EXCHANGE_ERROR_KIND.findall(fetcher_source) for kind in match if kind}
    kinds = {"ExchangeErrorsByKind": len(error_kinds), "PairsRejectedByReason": REJECTION_REASONS_ASSUMED}
    total = sum(per_function.values()) + sum(kinds.get(name, 0) for name in breakdowns)
    note = (
        "custom metrics: "
        + ", ".join(f"{name} {count}" for name, count in per_function.items())
        + f"; breakdowns by {BREAKDOWN_DIMENSION}: {len(error_kinds)} exchange error kinds found in the "
        f"code, {REJECTION_REASONS_ASSUMED} rejection reasons assumed (validation messages, not enumerable); "
        "breakdowns exist only in hours with errors, so their full month is an upper bound"
    )
    return total, note


def _deployment_figures(
    settings: Any, body_bytes_20: float, seen_metrics: Mapping[str, set[str]]
) -> DeploymentFigures:
    from local_stack.template import function_definition, function_properties, load_template

    template = load_template()
    resources = template["Resources"]
    prices = function_definition(template, "PricesApiFunction")
    fetcher = function_definition(template, "FetcherFunction")
    fetcher_env = fetcher.environment
    globals_env = template["Globals"]["Function"]["Environment"]["Variables"]
    logging = function_properties(template, "PricesApiFunction").get("LoggingConfig", {})
    system_level = str(logging.get("SystemLogLevel", "INFO")).upper()
    drops_platform_lines = system_level in ("WARN", "ERROR", "FATAL")
    http_api = next(res for res in resources.values() if res["Type"] == "AWS::Serverless::HttpApi")
    access_format = http_api["Properties"]["AccessLogSettings"]["Format"]
    cache = next(res for res in resources.values() if res["Type"] == "AWS::ElastiCache::ServerlessCache")
    custom_metrics, metrics_note = _custom_metrics(seen_metrics)
    route_settings = http_api["Properties"]["DefaultRouteSettings"]
    return DeploymentFigures(
        prices_memory_gb=prices.memory_mb / 1024,
        fetcher_memory_gb=fetcher.memory_mb / 1024,
        fetcher_run_seconds=float(fetcher_env["FETCHER_RUN_SECONDS"]),
        schedule_period_s=_rate_seconds(fetcher.schedule_expression or ""),
        fetch_interval_s=int(_parameter_default(template, globals_env["FETCH_INTERVAL_MS"])) / 1000,
        batch_size=int(fetcher_env["MARKET_DATA_BATCH_SIZE"]),
        lkg_write_interval_ms=int(fetcher_env["LAST_KNOWN_GOOD_WRITE_INTERVAL_MS"]),
        # Not in the template: the settings' defaults, as the handler combines them.
        exchange_info_refresh_s=min(settings.exchange_info_refresh_ms, settings.whitelist_recheck_ms) / 1000,
        prices_platform_log_bytes=0 if drops_platform_lines else LAMBDA_PLATFORM_LOG_BYTES,
        prices_logging=f"LogFormat {logging.get('LogFormat', 'Text')}, SystemLogLevel {system_level}",
        access_log_bytes=_access_log_bytes(access_format, body_bytes_20),
        alarms=sum(1 for res in resources.values() if res["Type"] == "AWS::CloudWatch::Alarm"),
        dashboards=sum(1 for res in resources.values() if res["Type"] == "AWS::CloudWatch::Dashboard"),
        custom_metrics=custom_metrics,
        custom_metrics_note=metrics_note,
        log_retention_days=int(_parameter_default(template, {"Ref": "LogRetentionInDays"})),
        route_rate_limit=float(_parameter_default(template, route_settings["ThrottlingRateLimit"])),
        ecpu_per_second_cap=float(cache["Properties"]["CacheUsageLimits"]["ECPUPerSecond"]["Maximum"]),
    )


def _lkg_writes(earlier: list[Row] | None, interval_ms: int) -> tuple[float, str]:
    for row in earlier or []:
        if row.scenario == "write cost" and "lkg_writes_per_pair_per_hour" in row.figures:
            value = float(row.figures["lkg_writes_per_pair_per_hour"])
            return (
                value,
                f"last-known-good writes {value} per pair per hour, measured by the write cost scenario",
            )
    bound = 3_600_000 / interval_ms
    return bound, (
        f"last-known-good writes: the configured bound 3,600,000 / LAST_KNOWN_GOOD_WRITE_INTERVAL_MS "
        f"= {bound:.0f} per pair per hour (the write cost scenario was not run before this one)"
    )


def measure(earlier: list[Row] | None = None) -> MeasuredFigures:
    by_pairs: dict[int, PairCountFigures] = {}
    seen_metrics: dict[str, set[str]] = {}
    with real_parts(generated_pairs=max(MEASURED_PAIR_COUNTS)) as stack:
        # The slot number only names the claim: numbering slots ahead of the clock gives every
        # slot its own claim without waiting for the next wall-clock slot.
        slots = iter(range(int(time.time()) + 1, int(time.time()) + 1_000))
        for pair_count in MEASURED_PAIR_COUNTS:
            stack.simulator.reset_limits()  # 400 pairs spend weight; each case starts from zero
            by_pairs[pair_count], seen = _measure_pair_count(stack, pair_count, slots)
            for service, names in seen.items():
                seen_metrics.setdefault(service, set()).update(names)
        from market_data.config import load_settings

        settings = load_settings()
    deployment = _deployment_figures(settings, by_pairs[DEFAULT_PAIRS].body_bytes, seen_metrics)
    lkg_per_hour, lkg_source = _lkg_writes(earlier, deployment.lkg_write_interval_ms)
    return MeasuredFigures(by_pairs, deployment, lkg_per_hour, lkg_source)


# --- rows --------------------------------------------------------------------------------------
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
    origin_rps = min(
        DEFAULT_CLIENTS / DEFAULT_POLL_INTERVAL_S, CDN_EDGE_LOCATIONS * CDN_DISTINCT_URLS / CACHE_MAX_AGE_S
    )
    assumption = (
        f"{CDN_EDGE_LOCATIONS} edge locations, {CDN_DISTINCT_URLS} URL, max-age {CACHE_MAX_AGE_S:g} s: "
        f"the origin sees at most {origin_rps:.0f} req/s; origin to CloudFront transfer is free"
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


def run(earlier: list[Row] | None = None) -> list[Row]:
    started = time.perf_counter()
    measured = measure(earlier)
    rows = [
        *_measured_rows(measured),
        *_line_rows(measured),
        *_growth_rows(measured),
        *_cdn_rows(measured),
    ]
    rows[0].notes.append(f"scenario ran in {time.perf_counter() - started:.1f} s")
    return rows
