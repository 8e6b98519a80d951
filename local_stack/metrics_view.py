"""The metrics the functions would send to CloudWatch, made readable on the local stack.

On AWS, CloudWatch reads the EMF documents the functions print. Here ``EmfTap`` stands in for
stdout: it takes those documents out of the stream, keeps them in ``LocalMetrics`` (served at
``GET /_local/metrics``), prints one short line per fetcher slot instead, and lets every other
line (the JSON logs) through untouched. What is shown is exactly what was printed, so the local
view cannot disagree with what CloudWatch would get.
"""

from __future__ import annotations

import io
import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
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

    slot = document["slot"]
    if outcome == "skipped":
        return None
    if outcome != "ticked":
        missing = first("PairsMissing")
        return f"[tick] slot {slot}: {outcome}, nothing fetched" + (
            f", {missing:g} pairs going stale" if missing else ""
        )
    gaps = sorted(document.get("SyncGap") or [])
    weight, fetch, write = first("ExchangeWeightUsed"), first("FetchLatency"), first("CacheWriteLatency")
    timings = [f"fetch {fetch:g} ms" if fetch is not None else "no fetch"]
    timings.append(f"write {write:g} ms" if write is not None else "no cache write")
    if gaps:
        timings.append(f"sync gap {gaps[(len(gaps) - 1) // 2]:g} ms")
    load = f"{first('ExchangeRequests'):g} requests" + (f", weight {weight:g}" if weight is not None else "")
    errors = ", ".join(document.get("errorKinds") or []) or "none"
    return (
        f"[tick] slot {slot}: {first('PairsFetched'):g} pairs, {first('PairsMissing'):g} missing, "
        f"{first('PairsRejected'):g} rejected; {', '.join(timings)}; {load}; errors {errors}"
    )


class EmfTap(io.TextIOBase):
    """A stdout that keeps EMF documents for the view and prints a tick line in their place."""

    def __init__(self, target: TextIO, metrics: LocalMetrics, *, echo_documents: bool = False) -> None:
        self.target, self.metrics, self.echo_documents = target, metrics, echo_documents
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
        self._emit(line)

    def _emit(self, line: str) -> None:
        with self._lock:
            self.target.write(line + "\n")
            self.target.flush()

    def flush(self) -> None:
        self.target.flush()
