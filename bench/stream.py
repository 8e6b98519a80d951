"""Push over WebSocket: delivery to a thousand real sockets, the broadcaster's time as connections
grow, the capacity of one invocation, and the connection registry's cost per tick both ways.

**Delivery.** The local gateway's ``/ws`` runs in this process as ``make demo`` runs it (the
template's WebSocket routes, the stream and broadcaster functions behind the local Lambda Invoke API,
the management API on the same port), against a redis-server, moto in a process of its own and the
Binance simulator. A thousand ``websockets`` clients in another process (bench/stream_clients.py,
asyncio) each subscribe to three of the twenty pairs. A fetcher built as the handler builds it ticks
on real wall-clock slots (``run_slot``); its tick consumer starts the broadcaster through the Invoke
API, which posts through the management API, as on AWS. The delay of each update is the client's
receipt time minus the moment the tick's cache write returned (``write_cache`` observed in the tick),
one sample per client per slot. Where it goes, per slot: the last-known-good write before the tick's
consumers run, the Invoke hop, the registry Query, the decision (prices, what changed, status and
heartbeat), and the fan-out.

**Scaling, capacity, registry** come from ``bench.cost.measure_push`` (the cost model prices the
same figures; one measurement serves both scenarios in a run). It runs past 300 lines because the
delivery figures need the wrappers that time each slot's way, the clients' process and their rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from bench.common import REPO_ROOT, Row, generated_pairs, percentile, quiet_stdout, real_parts
from bench.push_parts import (
    BROADCASTER,
    QueryReplay,
    local_gateway,
    prime_registry_query,
    push_environment,
    raise_open_files,
)

SCENARIO = "stream"
DELIVERY_CLIENTS = 1_000
DELIVERY_PAIRS = 20  # the cost model's default case
PAIRS_PER_CLIENT = 3
DELIVERY_TICKS = 8
DELIVERY_TARGET_P99_MS = 250.0
CLIENTS_READY_TIMEOUT_S = 90.0
DRAIN_TIMEOUT_S = 15.0  # after the last tick: its fan-out ends and the clients read what it sent


@dataclass
class SlotTimes:
    """Wall-clock times (time.time()) of one slot's way from the cache write to the fan-out's end."""

    written: float = 0.0  # the tick's cache write returned
    notified: float = 0.0  # the tick's consumers were called (after last known good)
    query_started: float = 0.0
    query_ended: float = 0.0
    decided: float = 0.0
    fanout_started: float = 0.0
    fanout_ended: float = 0.0
    sent: int = 0


@dataclass
class Observed:
    """What the fetcher and the broadcaster did, by slot_ms, seen through thin wrappers."""

    interval_ms: int
    slots: dict[int, SlotTimes] = field(default_factory=dict)
    _queries: dict[int, tuple[float, float]] = field(default_factory=dict)  # thread id -> last Query

    def of(self, slot_ms: int) -> SlotTimes:
        return self.slots.setdefault(slot_ms, SlotTimes())

    @contextlib.contextmanager
    def watching(self, container: Any) -> Iterator[None]:
        import broadcaster.handler as broadcaster_handler
        import fetcher.tick as tick
        from market_data import store

        write_cache, list_connections = tick.write_cache, store.list_connections
        decide, post_all = broadcaster_handler.decide, broadcaster_handler.post_all

        def timed_write(fetcher_: Any, opened: Any, *args: Any, **kwargs: Any) -> Any:
            result = write_cache(fetcher_, opened, *args, **kwargs)
            self.of(opened.slot * self.interval_ms).written = time.time()
            return result

        def notified(written: Any) -> None:
            self.of(written.slot * self.interval_ms).notified = time.time()

        def timed_query(*args: Any, **kwargs: Any) -> Any:
            started = time.time()
            result = list_connections(*args, **kwargs)
            self._queries[threading.get_ident()] = (started, time.time())
            return result

        def timed_decide(settings: Any, notice: Any, connections: Any) -> Any:
            times = self.of(notice.slot_ms)
            times.query_started, times.query_ended = self._queries.get(threading.get_ident(), (0.0, 0.0))
            decision = decide(settings, notice, connections)
            times.decided = time.time()
            return decision

        def timed_post_all(settings: Any, decision: Any, connections: Any) -> Any:
            times = self.of(decision.notice.slot_ms)
            times.fanout_started = time.time()
            result = post_all(settings, decision, connections)
            times.sent, times.fanout_ended = result.sent, time.time()
            return result

        container.deps.consumers.insert(0, notified)  # just before the broadcaster is started
        with (
            mock.patch.object(tick, "write_cache", timed_write),
            mock.patch.object(store, "list_connections", timed_query),
            mock.patch.object(broadcaster_handler, "decide", timed_decide),
            mock.patch.object(broadcaster_handler, "post_all", timed_post_all),
        ):
            yield


@dataclass
class Clients:
    process: subprocess.Popen[str]
    errors: deque[str]

    def line(self, timeout_s: float) -> dict[str, Any]:
        """The process's next line on stdout, as JSON, within ``timeout_s``."""
        found: list[str] = []
        reader = threading.Thread(target=lambda: found.append(self.process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout_s)
        if not found or not found[0]:
            raise RuntimeError(
                f"the clients said nothing within {timeout_s:g} s: {' | '.join(list(self.errors)[-5:])}"
            )
        return json.loads(found[0])  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # type: ignore[union-attr]
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_clients(ws_url: str, clients: int, pairs: list[str], per_client: int) -> Clients:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.stream_clients",
            ws_url,
            str(clients),
            json.dumps(pairs),
            str(per_client),
        ],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    errors: deque[str] = deque(maxlen=20)
    threading.Thread(target=lambda: errors.extend(process.stderr or ()), daemon=True).start()
    return Clients(process, errors)


def _wait_for_slot(interval_ms: int) -> int:
    """The next wall-clock slot, once it has started (as the fetcher's loop waits for it)."""
    from market_data.clock import now_ms

    slot = now_ms() // interval_ms + 1
    time.sleep(max(slot * interval_ms - now_ms(), 0) / 1000)
    return slot


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process, from /proc (0 where there is none)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class DeliveryRun:
    clients: int
    ready: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    measured: list[int] = field(default_factory=list)  # the slots' slot_ms
    summary: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    open_files: tuple[int, int] = (0, 0)
    window_s: float = 0.0  # from the first measured tick to the report
    server_cpu_s: float = 0.0  # this process (gateway, functions, fetcher) over the window
    clients_cpu_s: float = 0.0
    moto_query_ms: list[tuple[int, float]] = field(default_factory=list)
    replayed_queries: int = 0
    seconds: float = 0.0


def delivery(clients: int = DELIVERY_CLIENTS, ticks: int = DELIVERY_TICKS) -> list[Row]:
    started = time.perf_counter()
    run = DeliveryRun(clients, open_files=raise_open_files(clients + 512))
    pairs = generated_pairs(DELIVERY_PAIRS)
    with (
        real_parts(generated_pairs=DELIVERY_PAIRS, moto_process=True) as stack,
        local_gateway(run.problems) as base,
        push_environment(stack, pairs, base, BROADCASTER_FUNCTION_NAME=BROADCASTER),
        quiet_stdout(),
    ):
        from fetcher.deps import build_fetcher
        from fetcher.loop import LoopSummary, run_slot
        from market_data import store
        from market_data.config import load_settings

        settings = load_settings()
        interval = settings.fetch_interval_ms
        fetcher = build_fetcher(settings)
        observed = Observed(interval)
        replay = QueryReplay()
        summary = LoopSummary()
        try:
            with observed.watching(fetcher), replay.watching(store.get_table(settings)):
                # A new deployment's first slot (exchangeInfo, the registry, last known good):
                # prices to snapshot before the clients subscribe.
                run_slot(fetcher, _wait_for_slot(interval), "bench-stream", summary)
                ws_url = base.replace("http://", "ws://") + "/ws"
                client_process = start_clients(ws_url, clients, pairs, PAIRS_PER_CLIENT)
                try:
                    run.ready = client_process.line(CLIENTS_READY_TIMEOUT_S)
                    prime_registry_query(settings, replay)
                    window_started, server_cpu = time.perf_counter(), _own_cpu_s()
                    clients_cpu = _process_cpu_s(client_process.process.pid)
                    for _ in range(ticks):
                        slot = _wait_for_slot(interval)
                        run_slot(fetcher, slot, "bench-stream", summary)
                        run.measured.append(slot * interval)
                    deadline = time.monotonic() + DRAIN_TIMEOUT_S
                    while time.monotonic() < deadline and not observed.of(run.measured[-1]).fanout_ended:
                        time.sleep(0.1)
                    time.sleep(1.0)  # the last posts' frames reach the clients' reads
                    run.window_s = time.perf_counter() - window_started
                    run.server_cpu_s = _own_cpu_s() - server_cpu
                    run.clients_cpu_s = _process_cpu_s(client_process.process.pid) - clients_cpu
                    client_process.process.stdin.write("report\n")  # type: ignore[union-attr]
                    client_process.process.stdin.flush()  # type: ignore[union-attr]
                    run.report = client_process.line(30)
                finally:
                    client_process.stop()
        finally:
            fetcher.close()
        run.summary = summary.as_dict()
        run.moto_query_ms, run.replayed_queries = replay.moto_ms, replay.replayed
    run.seconds = time.perf_counter() - started
    return _delivery_rows(run, observed)


def _ms(later: float, earlier: float) -> float:
    return round((later - earlier) * 1000, 1) if later and earlier else float("nan")


def _delivery_rows(run: DeliveryRun, observed: Observed) -> list[Row]:
    clients, ready, report, measured = run.clients, run.ready, run.report, run.measured
    delays: list[float] = []
    per_slot_last: list[float] = []
    missing = 0
    for slot_ms in measured:
        times = observed.of(slot_ms)
        receipts = report["updates"].get(str(slot_ms), [])
        missing += ready["ready"] - len(receipts)
        slot_delays = [(receipt - times.written) * 1000 for receipt in receipts]
        delays += slot_delays
        if slot_delays:
            per_slot_last.append(max(slot_delays))
    if not delays:
        raise RuntimeError(f"no update reached a client: {report.get('kinds')}; problems: {run.problems[:3]}")
    p50, p99 = percentile(delays, 0.5), percentile(delays, 0.99)
    phases = {
        "last_known_good_ms": [_ms(observed.of(s).notified, observed.of(s).written) for s in measured],
        "invoke_hop_ms": [_ms(observed.of(s).query_started, observed.of(s).notified) for s in measured],
        "query_ms": [_ms(observed.of(s).query_ended, observed.of(s).query_started) for s in measured],
        "decide_ms": [_ms(observed.of(s).decided, observed.of(s).query_ended) for s in measured],
        "fanout_ms": [_ms(observed.of(s).fanout_ended, observed.of(s).fanout_started) for s in measured],
    }
    medians = {name: round(statistics.median(values), 1) for name, values in phases.items()}
    fanout_s = [
        observed.of(s).fanout_ended - observed.of(s).fanout_started
        for s in measured
        if observed.of(s).fanout_ended
    ]
    sent = [observed.of(s).sent for s in measured if observed.of(s).fanout_ended]
    posts_per_s = round(sum(sent) / sum(fanout_s)) if fanout_s and sum(fanout_s) else 0
    update_share = sum(len(report["updates"].get(str(s), [])) for s in measured) / (
        ready["ready"] * len(measured)
    )
    moto = ", ".join(f"{size:,} bytes in {ms:.0f} ms" for size, ms in run.moto_query_ms)
    notes = [
        f"{ready['ready']:,} of {clients:,} clients subscribed in {ready['seconds']} s "
        f"({ready['failed']} failed{': ' + '; '.join(ready['failures']) if ready['failed'] else ''})",
        f"open files: soft limit {run.open_files[0]:,} (hard {run.open_files[1]:,}) here, "
        f"{ready['open_files'][0]:,} in the clients' process",
        f"{len(measured)} ticks on wall-clock slots; fetcher: {run.summary}",
        f"messages received by kind: {report['kinds']}",
        "CPU over the ticks: this process (gateway, functions, fetcher) "
        f"{run.server_cpu_s / run.window_s:.0%} of a core, the clients' process "
        f"{run.clients_cpu_s / run.window_s:.0%} (2 cores)",
        f"registry Query: moto answered {moto}; the {run.replayed_queries} Queries of the ticks got the "
        "same bytes without moto's time (bench/push_parts.py: QueryReplay)",
        f"scenario ran in {run.seconds:.1f} s",
    ]
    if run.problems:
        notes.append(
            f"{len(run.problems)} function failures reported by the local stack, first: "
            + run.problems[0][:200]
        )
    return [
        Row(
            SCENARIO,
            f"delivery: {clients:,} connections, {PAIRS_PER_CLIENT} pairs each, cache write to receipt",
            {
                "p50_ms": round(p50, 1),
                "p99_ms": round(p99, 1),
                "max_ms": round(max(delays), 1),
                "samples": len(delays),
                "missing": missing,
                "update_share": round(update_share, 4),
            },
            limit="",
            target=f"p99 <= {DELIVERY_TARGET_P99_MS:g} ms",
            met=p99 <= DELIVERY_TARGET_P99_MS and missing == 0,
            notes=notes,
        ),
        Row(
            SCENARIO,
            f"delivery: where the time goes ({clients:,} connections, median of {len(measured)} slots)",
            {
                **medians,
                "fanout_posts_per_s": posts_per_s,
                "last_receipt_ms": round(statistics.median(per_slot_last), 1) if per_slot_last else None,
            },
            notes=[
                "last known good: the tick's DynamoDB write before its consumers run; invoke hop: the "
                "fetcher's consumer thread to the broadcaster's Query, through the local Invoke API; "
                "everything in one process, the gateway's sockets included, on a 2-core machine "
                "shared with the clients' process",
            ],
        ),
    ]


def run() -> list[Row]:
    rows = delivery()
    from bench.cost import measure_push, push_report

    rows += push_report.stream_rows(measure_push.measure_push())
    return rows
