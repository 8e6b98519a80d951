"""Logger, metrics and the optional tracer: created once, shared by every function.

Metrics are CloudWatch embedded-metric-format (EMF) documents that Powertools prints to stdout;
CloudWatch turns them into metrics at no API cost. Every metric carries the same two dimensions,
``service`` (the function: fetcher, prices-api, whitelist) and ``stack`` (the deployment, so two
stacks in one account never mix), and the two breakdowns add ``kind``. The dashboard and the
alarms in template.yaml read exactly these; tests/integration/test_metrics_contract.py proves it
from what the handlers print.

The API functions do not print a document per request: at 1,000 clients polling every 2 s that
would be a log line per request. ``RequestMetrics`` sums them in the container instead and prints
one document per window.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from market_data.contracts import RESPONSES_2XX, RESPONSES_4XX, RESPONSES_5XX, RESPONSES_UNAVAILABLE

# POWERTOOLS_SERVICE_NAME and POWERTOOLS_LOG_LEVEL come from the template.
logger = Logger()

DEFAULT_NAMESPACE = "MarketData"
MS, COUNT = MetricUnit.Milliseconds, MetricUnit.Count

# Every metric the service emits, with its unit: one place, so a name cannot drift between the
# call sites, and a typo fails loudly (KeyError) instead of starting a new metric.
UNITS: dict[str, MetricUnit] = {
    # fetcher, every slot of every running invocation
    "Heartbeats": COUNT,  # 1 per slot while an invocation runs, paused or not
    "Ticks": COUNT,  # slots this invocation fetched
    "TicksPaused": COUNT,  # slots not fetched because of a ban, the weight budget or an open circuit
    "TicksSkippedClaimedElsewhere": COUNT,  # slots another invocation fetched
    "TickFailures": COUNT,  # slots that ended in an unexpected error
    "CircuitOpen": COUNT,  # exchanges whose circuit breaker is open
    # fetcher, every slot it owns (fetched, paused or failed)
    "PairsMissing": COUNT,  # active pairs whose price was not refreshed in this slot
    # fetcher, every tick
    "FetchLatency": MS,  # the exchange phase: first request out to last answer in
    "TickDuration": MS,  # the whole tick, registry read to last write
    "CacheWriteLatency": MS,  # the tick's one MULTI/EXEC
    "SyncGap": MS,  # exchange ticker time to visible in the cache, per pair written
    "PairsFetched": COUNT,
    "PairsOnFallback": COUNT,  # pairs served by a later exchange than their first (failover)
    "PairsRejected": COUNT,  # tickers dropped (invalid) or held back (price jump)
    "ExchangeErrors": COUNT,
    "ExchangeRequests": COUNT,
    "ExchangeWeightUsed": COUNT,  # what the exchange reports used this minute (X-MBX-USED-WEIGHT-1M)
    # The weight of the tick's own requests; summed per minute, its gap to ExchangeWeightUsed is
    # what other clients behind the same address (a shared NAT gateway) used.
    "ExchangeWeightSpent": COUNT,
    "LastKnownGoodWrites": COUNT,
    "StoreErrors": COUNT,  # DynamoDB calls that failed
    "WhitelistVerified": COUNT,
    "WhitelistRejected": COUNT,
    "WhitelistSuspended": COUNT,
    "WhitelistRestored": COUNT,
    # breakdowns, with the extra dimension ``kind``
    "ExchangeErrorsByKind": COUNT,  # timeout, http_5xx, rate_limited, ...
    "PairsRejectedByReason": COUNT,  # price, high24h, malformed, price_jump, ...
    "PairsFetchedByExchange": COUNT,  # binance, coinbase, ...: which exchange serves how many
    # API functions, per request, summed per window
    "ReadLatency": MS,  # a prices request, event in to response out
    "RequestLatency": MS,  # a whitelist request
    "PairsServedFresh": COUNT,  # the cache hit rate is fresh / (fresh + stale + last known good + missing)
    "PairsServedStale": COUNT,
    "PairsServedLastKnownGood": COUNT,
    "PairsServedMissing": COUNT,
    "Responses2xx": COUNT,
    "Responses4xx": COUNT,
    "Responses5xx": COUNT,  # server errors; the designed 503s are counted apart
    "ResponsesUnavailable": COUNT,  # designed 503s: cold cache, fetcher down
    "WhitelistSubmissions": COUNT,  # new pending pairs
    "WhitelistRefusedByCap": COUNT,  # 429: pending cap or per-address hourly cap
    "WhitelistRevoked": COUNT,
    "WhitelistApproved": COUNT,
    # broadcaster, every fan-out it runs (one slot, or its share of a split one)
    "StreamConnections": COUNT,  # connections registered (its share, when split)
    "StreamMessagesSent": COUNT,  # updates, status messages and heartbeats posted
    "StreamPostsFailed": COUNT,  # posts that failed (not gone: API Gateway or the network)
    "StreamConnectionsGone": COUNT,  # posts answered 410: the connection was removed
    "StreamFanOutDuration": MS,  # first post out to last answer in
    "StreamFanOutLag": MS,  # slot start to the last post answered: what a client waits, past the tick
    "StreamFanOutSplits": COUNT,  # more broadcaster invocations started for this slot
}
BREAKDOWN_DIMENSION = "kind"
MAX_SAMPLES_PER_DOCUMENT = 99  # EMF allows 100 values per metric; Powertools flushes at 100
_PRINTING = threading.Lock()


def _new_document(service: str) -> EphemeralMetrics:
    """A metric set of its own: functions sharing a process (the local stack) never mix."""
    return EphemeralMetrics(
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE,
        service=service,
        default_dimensions={"stack": os.environ.get("METRICS_STACK") or "local"},
    )


def emit_metrics(
    service: str,
    values: Mapping[str, float | Sequence[float]],
    *,
    breakdowns: Mapping[str, Mapping[str, float]] | None = None,
    timestamp_ms: int | None = None,
    metadata: Mapping[str, object] | None = None,
) -> None:
    """Print one EMF document with ``values`` (a sequence is several samples of one metric, at
    most 99), then one small document per breakdown entry (``{metric: {kind: value}}``).
    ``metadata`` rides along in the document (searchable in the logs) without becoming a metric."""
    document = _new_document(service)
    for name, value in values.items():
        samples = value if isinstance(value, Sequence) else (value,)
        if not samples:
            continue
        if len(samples) > MAX_SAMPLES_PER_DOCUMENT:
            raise ValueError(
                f"{name}: {len(samples)} samples, at most {MAX_SAMPLES_PER_DOCUMENT} per document"
            )
        document.add_metric(name=name, unit=UNITS[name], value=samples[0])  # validates name, unit, value
        # add_metric formats the metric's whole sample list into a debug message on every call:
        # quadratic in the samples (1.4 ms for a window of 99 latencies, the prices function's p99).
        # The other samples join the list it created, as floats as add_metric stores them.
        document.metric_set[name]["Value"].extend(float(sample) for sample in samples[1:])
    for key, item in (metadata or {}).items():
        document.add_metadata(key=key, value=item)
    if timestamp_ms is not None:
        document.set_timestamp(timestamp_ms)
    singles = []
    for name, by_kind in (breakdowns or {}).items():
        for kind, value in by_kind.items():
            single = _new_document(service)
            single.add_dimension(name=BREAKDOWN_DIMENSION, value=kind)
            single.add_metric(name=name, unit=UNITS[name], value=value)
            if timestamp_ms is not None:
                single.set_timestamp(timestamp_ms)
            singles.append(single)
    # One document per line, whole: Powertools' flush prints the text and its newline in two
    # writes, and a log line from another thread (the fetcher's candle roll-up, the local stack's
    # gateway) could land between them, leaving neither readable. One write each, in turn.
    if is_metrics_disabled():
        return
    with _PRINTING:
        for each in (document, *singles):
            if each.metric_set:
                sys.stdout.write(json.dumps(each.serialize_metric_set(), separators=(",", ":")) + "\n")
                each.clear_metrics()


# Powertools prints a document on its own when a metric reaches 100 values; a window ends one
# sample earlier so each window is exactly one document.
MAX_SAMPLES_PER_WINDOW = MAX_SAMPLES_PER_DOCUMENT
FLUSH_INTERVAL_S = 10.0


class RequestMetrics:
    """Per-request metrics of an API function, summed in the container, one document per window.

    A window ends at the first request after ``flush_interval_s``, after 99 latency samples (so
    the percentiles are exact, not sampled), or at once after a server error, which an alarm
    waits for. What a container holds when it is retired is lost: at most one window of counts.
    ``on_flush`` (counts, latency samples in ms) shares the window elsewhere, e.g. with health.
    """

    def __init__(
        self,
        service: str,
        latency_metric: str,
        *,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        on_flush: Callable[[Mapping[str, float], list[float]], None] | None = None,
    ) -> None:
        if latency_metric not in UNITS:
            raise KeyError(latency_metric)
        self.service, self.latency_metric = service, latency_metric
        self.flush_interval_s, self.on_flush = flush_interval_s, on_flush
        self._lock = threading.Lock()
        self._counts: dict[str, float] = {}
        self._latencies: list[float] = []
        self._window_started = time.monotonic()
        self._last_at_ms: int | None = None

    def add(self, name: str, value: float = 1) -> None:
        """Count ``value`` into ``name`` for the current window (e.g. a submission refused)."""
        self.add_counts({name: value})

    def add_counts(self, counts: Mapping[str, float]) -> None:
        unknown = [name for name in counts if name not in UNITS]
        if unknown:
            raise KeyError(", ".join(unknown))
        with self._lock:
            for name, value in counts.items():
                self._counts[name] = self._counts.get(name, 0) + value

    def record_response(self, status: int, latency_ms: float | None) -> None:
        """Count one response by class, keep its latency, and end the window when it is due."""
        if status == 503:
            name = RESPONSES_UNAVAILABLE
        elif status >= 500:
            name = RESPONSES_5XX
        elif status >= 400:
            name = RESPONSES_4XX
        else:
            name = RESPONSES_2XX
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + 1
            if latency_ms is not None:
                self._latencies.append(round(latency_ms, 3))
            self._last_at_ms = time.time_ns() // 1_000_000
            due = (
                name == RESPONSES_5XX
                or len(self._latencies) >= MAX_SAMPLES_PER_WINDOW
                or time.monotonic() - self._window_started >= self.flush_interval_s
            )
        if due:
            self.flush()

    def flush(self) -> None:
        """Print the window's document (and share it) now; a no-op for an empty window."""
        with self._lock:
            # Requests served on other threads (the local stack's gateway) may have added samples
            # since the window filled: a document holds 99, the rest open the next window.
            counts, last_at = self._counts, self._last_at_ms
            latencies = self._latencies[:MAX_SAMPLES_PER_WINDOW]
            self._counts, self._latencies = {}, self._latencies[MAX_SAMPLES_PER_WINDOW:]
            self._window_started = time.monotonic()
        if not counts and not latencies:
            return
        values: dict[str, float | Sequence[float]] = dict(counts)
        if latencies:
            values[self.latency_metric] = latencies
        emit_metrics(self.service, values, timestamp_ms=last_at)
        if self.on_flush is not None:
            try:
                self.on_flush(counts, latencies)
            except Exception:  # sharing the window is a nicety; the request must not fail for it
                logger.warning("request metrics not shared", exc_info=True)


HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])


def tracing_enabled() -> bool:
    """X-Ray tracing is off unless the template's Tracing parameter turns it on."""
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "true").strip().lower() in ("false", "0")


def traced(handler: HandlerT) -> HandlerT:
    """Wrap ``handler`` with Powertools Tracer when tracing is on. Off (the default), the X-Ray SDK
    is not even imported: it adds to every cold start."""
    if not tracing_enabled():
        return handler
    from aws_lambda_powertools import Tracer

    return Tracer().capture_lambda_handler(handler)  # type: ignore[return-value]


_cold = True


def with_request_context(handler: HandlerT) -> HandlerT:
    """The keys Powertools' ``inject_lambda_context`` gives each log line (function name, memory,
    ARN, request id, cold start), plus the API Gateway request id as ``correlation_id``, in one
    ``append_keys`` call: for the read path, where the decorator's per-request model, environment
    lookups and JMESPath search cost more than the rest of the logging set-up together."""

    @functools.wraps(handler)
    def with_context(event: dict[str, Any], context: Any) -> Any:
        global _cold
        cold, _cold = _cold, False
        logger.append_keys(
            cold_start=cold,
            function_name=context.function_name,
            function_memory_size=context.memory_limit_in_mb,
            function_arn=context.invoked_function_arn,
            function_request_id=context.aws_request_id,
            correlation_id=event.get("requestContext", {}).get("requestId"),
        )
        if logger.sampling_rate and not cold:  # POWERTOOLS_LOGGER_SAMPLE_RATE: drawn per request
            logger.refresh_sample_rate_calculation()
        return handler(event, context)

    return with_context  # type: ignore[return-value]


def debug_enabled() -> bool:
    """Whether a debug line would be printed now (POWERTOOLS_LOG_LEVEL, or this request sampled):
    cheaper than building one that is not."""
    return logger.log_level <= logging.DEBUG
