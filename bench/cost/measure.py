"""Measuring: the figures the cost model prices, taken on this machine and from template.yaml.

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

It runs past 300 lines because each measured quantity needs its own probe (the cache's INFO
counters, the simulator's requests, the DynamoDB client's events, captured stdout, the template)
and all of them feed the one ``measure`` call.
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
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any
from unittest import mock

from bench.common import (
    REPO_ROOT,
    Row,
    Stack,
    configure_service,
    generated_pairs,
    percentile,
    quiet_stdout,
    real_parts,
)
from bench.cost.model import (
    ACCESS_LOG_LATENCY_MS,
    DEFAULT_PAIRS,
    LAMBDA_PLATFORM_LOG_BYTES,
    REJECTION_REASONS_ASSUMED,
    DeploymentFigures,
    MeasuredFigures,
    PairCountFigures,
)

# The pair counts measured: the growth cases' own (bench.cost.report), so their rows use measured
# figures.
MEASURED_PAIR_COUNTS = (20, 100, 400)
# Enough samples for a stable mean at 20 pairs; fewer where each call is longer, to stay quick.
DURATION_INVOCATIONS = {20: 2_000, 100: 500, 400: 200}
WARM_UP_INVOCATIONS = 50
STEADY_SLOTS = 3

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


# --- on this machine: what the cache, the exchange and DynamoDB carried, and what was printed ----
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
    configure_service(stack, generated_pairs(pair_count), MARKET_DATA_TABLE_NAME=table)
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
    from fetcher.deps import build_fetcher
    from fetcher.loop import LoopSummary, run_slot
    from market_data.config import load_settings

    container = build_fetcher(load_settings())
    exchange, dynamo = ExchangeWire(), DynamoWire()
    steady: list[tuple[WireSnapshot, str, list[tuple[str, int]]]] = []  # cache, stdout, exchange
    try:
        with exchange.watching(stack.simulator), dynamo.watching(container.deps.table):
            # A new deployment's first slot seeds the registry, reads exchangeInfo and writes
            # every pair's last known good: measured for the item size and exchangeInfo only.
            with quiet_stdout():
                run_slot(container, next(slots), "bench-cost-model", LoopSummary())
            exchange_info = [size for path, size in exchange.take() if "exchangeInfo" in path]
            dynamo.queries, dynamo.query_bytes = 0, []
            for _ in range(STEADY_SLOTS):
                slot = next(slots)
                before = cache_wire.snapshot()
                with captured_stdout() as printed:
                    run_slot(container, slot, "bench-cost-model", LoopSummary())
                steady.append((cache_wire.since(before), printed.getvalue(), exchange.take()))
            # The same slot again from another invocation: the claim is taken, so it only
            # heartbeats and skips, as overlapping invocations do in every slot they do not own.
            before = cache_wire.snapshot()
            summary = LoopSummary()
            with captured_stdout() as skipped_printed:
                run_slot(container, slot, "bench-cost-model-overlap", summary)
            skipped = cache_wire.since(before)
        if summary.skipped_claimed_elsewhere != 1:
            raise RuntimeError(f"the overlapping invocation did not skip: {summary.as_dict()}")
        dataset_bytes = cache_wire.dataset_bytes()
    finally:
        container.close()
        container.deps.redis.close()
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
        source = "\n".join(path.read_text() for path in sorted((REPO_ROOT / package).rglob("*.py")))
        service = SERVICE_NAME.search(source)
        if service is None:
            raise RuntimeError(f"{package}: no metrics service name found")
        names = (named_in(source) | seen.get(service.group(1), set())) - breakdowns
        if "RequestMetrics(" in source:
            names |= response_names
        per_function[service.group(1)] = len(names)
    fetcher_source = "\n".join(
        path.read_text() for path in sorted((REPO_ROOT / "functions/fetcher/fetcher").rglob("*.py"))
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
        ecpu_per_second_cap=float(
            _parameter_default(template, cache["Properties"]["CacheUsageLimits"]["ECPUPerSecond"]["Maximum"])
        ),
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
