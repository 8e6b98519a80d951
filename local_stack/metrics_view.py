"""The metrics and logs the functions would send to CloudWatch, made readable on the local stack.

On AWS, CloudWatch reads the EMF documents the functions print. Here ``EmfTap`` stands in for
stdout: it takes those documents out of the stream, keeps them in ``LocalMetrics`` (served at
``GET /_local/metrics``), and prints one short line per fetcher slot instead. The functions' JSON
log lines are printed compact, one line a person can read (``raw_logs`` keeps them as JSON, as
CloudWatch gets them); every other line passes untouched. What is shown is exactly what was
printed, so the local view cannot disagree with what CloudWatch would get. Times are this
machine's local time.
"""

from __future__ import annotations

import io
import json
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

WINDOW_S = 300  # what the view summarises: the last five minutes


@dataclass(frozen=True)
class Sample:
    at: float  # epoch seconds
    service: str
    name: str
    kind: str | None
    unit: str
    values: tuple[float, ...]


class LocalMetrics:
    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: deque[Sample] = deque()
        self._lock = threading.Lock()

    def record(self, document: dict[str, Any]) -> None:
        at = document["_aws"]["Timestamp"] / 1000
        with self._lock:
            for directive in document["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    raw = document[metric["Name"]]
                    values = tuple(raw) if isinstance(raw, list) else (raw,)
                    self._samples.append(
                        Sample(at, document.get("service", "?"), metric["Name"], document.get("kind"),
                               metric["Unit"], values)
                    )  # fmt: skip
            self._forget(time.time())

    def _forget(self, now: float) -> None:
        while self._samples and self._samples[0].at < now - self.window_s:
            self._samples.popleft()

    def summary(self, now: float | None = None) -> list[dict[str, Any]]:
        """Per service, metric and kind over the window: count, sum, last, and p50/p99 for latencies."""
        with self._lock:
            self._forget(now or time.time())
            samples = list(self._samples)
        grouped: dict[tuple[str, str, str | None], list[Sample]] = {}
        for sample in samples:
            grouped.setdefault((sample.service, sample.name, sample.kind), []).append(sample)
        rows = []
        for (service, name, kind), group in sorted(grouped.items(), key=lambda item: str(item[0])):
            values = [value for sample in group for value in sample.values]
            row: dict[str, Any] = {
                "service": service, "metric": name if kind is None else f"{name}[{kind}]",
                "unit": group[-1].unit, "samples": len(values), "sum": round(sum(values), 3),
                "last": group[-1].values[-1],
            }  # fmt: skip
            if group[-1].unit == "Milliseconds":
                ordered = sorted(values)
                row["p50"] = ordered[max(math.ceil(0.5 * len(ordered)) - 1, 0)]
                row["p99"] = ordered[max(math.ceil(0.99 * len(ordered)) - 1, 0)]
            rows.append(row)
        return rows

    def render_text(self) -> str:
        rows = self.summary()
        if not rows:
            return "no metrics yet: the fetcher reports every slot, the API functions once per 10 s window\n"
        header = (
            f"{'service':<11} {'metric':<38} {'unit':<12} {'samples':>7} {'sum':>10} {'last':>9} "
            f"{'p50':>8} {'p99':>8}"
        )
        lines = [f"metrics of the last {int(WINDOW_S / 60)} minutes, as they would reach CloudWatch", header]
        for row in rows:
            lines.append(
                f"{row['service']:<11} {row['metric']:<38} {row['unit']:<12} {row['samples']:>7} "
                f"{row['sum']:>10g} {row['last']:>9g} {_opt(row.get('p50')):>8} {_opt(row.get('p99')):>8}"
            )
        return "\n".join(lines) + "\n"


def _opt(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def tick_line(document: dict[str, Any]) -> str | None:
    """One line for a fetcher slot this invocation owned (a skipped slot says nothing)."""
    if document.get("service") != "fetcher" or "slot" not in document:
        return None
    outcome = document.get("outcome")

    def first(name: str) -> float | None:
        raw = document.get(name)
        return None if raw is None else (raw[0] if isinstance(raw, list) else raw)

    # "[tick] slot N" first: what people and the end-to-end tests look for.
    slot = f"[tick] slot {document['slot']} at {clock(document['_aws']['Timestamp'] / 1000)}"
    if outcome == "skipped":
        return None
    if outcome != "ticked":
        missing = first("PairsMissing")
        return f"{slot}: {outcome}, nothing fetched" + (f", {missing:g} pairs going stale" if missing else "")
    gaps = sorted(document.get("SyncGap") or [])
    fetch, write = first("FetchLatency"), first("CacheWriteLatency")
    timings = [f"fetch {fetch:g} ms" if fetch is not None else "no fetch"]
    timings.append(f"write {write:g} ms" if write is not None else "no cache write")
    if gaps:
        timings.append(f"sync gap {gaps[(len(gaps) - 1) // 2]:g} ms")
    load = f"{first('ExchangeRequests'):g} requests" + _weight(document, first("ExchangeWeightUsed"))
    errors = ", ".join(document.get("errorKinds") or []) or "none"
    return (
        f"{slot}: {first('PairsFetched'):g} pairs, {first('PairsMissing'):g} missing, "
        f"{first('PairsRejected'):g} rejected; {', '.join(timings)}; {load}; errors {errors}"
    )


def _weight(document: dict[str, Any], used: float | None) -> str:
    """The tick's own weight, beside each exchange's count for the minute (every client behind
    the address) and its limit: ", weight 2 (binance 14/6000 this minute)"."""
    per_exchange = document.get("exchangeWeight")
    if isinstance(per_exchange, dict) and per_exchange:
        spent = sum(figures.get("tick", 0) for figures in per_exchange.values())
        counts = ", ".join(
            f"{name} {figures.get('usedThisMinute')}/{figures.get('limit')}"
            for name, figures in per_exchange.items()
        )
        return f", weight {spent:g} ({counts} this minute)"
    return f", weight used this minute {used:g}" if used is not None else ""


def clock(epoch_s: float) -> str:
    """HH:MM:SS in this machine's local time."""
    return time.strftime("%H:%M:%S", time.localtime(epoch_s))


# What Powertools adds to every line from the Lambda context and its own settings: the same on
# every line of an invocation, so the compact view leaves it out (the raw JSON keeps it).
CONSTANT_LOG_KEYS = frozenset({
    "level", "location", "message", "timestamp", "service", "cold_start", "function_name",
    "function_memory_size", "function_arn", "function_request_id", "correlation_id",
    "xray_trace_id", "sampling_rate", "exception", "exception_name", "stack_trace",
})  # fmt: skip


def compact_log_line(line: str) -> str | None:
    """A Powertools JSON log line as ``18:02:04 WARNING fetcher    message  key=value ...``, its
    traceback in full on the lines below; None when the line is not one (it is printed as it is)."""
    if not line.startswith("{"):
        return None
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or "level" not in entry or "message" not in entry:
        return None
    extras = [f"{key}={_value(value)}" for key, value in entry.items() if key not in CONSTANT_LOG_KEYS]
    message = entry["message"] if isinstance(entry["message"], str) else _value(entry["message"])
    head = f"{_log_time(entry.get('timestamp'))} {entry['level']:<7} {_function(entry):<10} {message}"
    text = "  ".join([head, " ".join(extras)]) if extras else head
    if entry.get("exception"):
        text += "\n" + str(entry["exception"])
    return text


def _log_time(timestamp: object) -> str:
    """Powertools' ``2026-05-01 18:02:04,123+0000`` (or RFC 3339) as local HH:MM:SS."""
    try:
        moment = datetime.fromisoformat(str(timestamp).replace(",", "."))
    except ValueError:
        return str(timestamp)
    return (moment.astimezone() if moment.tzinfo else moment).strftime("%H:%M:%S")


def _function(entry: dict[str, Any]) -> str:
    """FetcherFunction -> fetcher, PricesApiFunction -> prices-api: the metrics' service names."""
    name = entry.get("function_name")
    if not isinstance(name, str) or not name:
        return "-"
    name = name.removesuffix("Function")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name).lower()


def _value(value: object) -> str:
    """A value as it reads after ``key=``: bare when it can be, else JSON (quoted, escaped)."""
    if isinstance(value, str) and value and not any(c.isspace() or c in '"=' for c in value):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


class EmfTap(io.TextIOBase):
    """A stdout that keeps EMF documents for the view and prints a tick line in their place, and
    prints the functions' JSON log lines compact unless ``raw_logs``."""

    def __init__(
        self, target: TextIO, metrics: LocalMetrics, *, echo_documents: bool = False, raw_logs: bool = False
    ) -> None:
        self.target, self.metrics, self.echo_documents = target, metrics, echo_documents
        self.raw_logs = raw_logs  # the JSON log lines as they are, not compact
        self._pending = threading.local()  # print() writes a line in pieces, per thread
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        buffered = getattr(self._pending, "text", "") + text
        *lines, rest = buffered.split("\n")
        self._pending.text = rest
        for line in lines:
            self._line(line)
        return len(text)

    def _line(self, line: str) -> None:
        if line.startswith('{"_aws"'):
            try:
                document = json.loads(line)
            except ValueError:
                document = None
            if document is not None:
                self.metrics.record(document)
                summary = tick_line(document)
                if not self.echo_documents:
                    if summary is not None:
                        self._emit(summary)
                    return
        elif not self.raw_logs:
            compact = compact_log_line(line)
            if compact is not None:
                line = compact
        self._emit(line)

    def _emit(self, line: str) -> None:
        with self._lock:
            self.target.write(line + "\n")
            self.target.flush()

    def flush(self) -> None:
        self.target.flush()
