"""Freshness under load: the whole local stack (``make demo``) read by 50 pollers for 30 s.

The stack runs as a developer runs it, in its own process: the local HTTP API in front of the
real prices handler, the scheduled fetcher loop, a redis-server, moto and the Binance simulator.
Fifty pollers each GET /api/market-data/prices every 500 ms (100 requests a second offered).

What is measured:
- data age as clients see it: the client's receive time minus each pair's ``timestamp`` (the
  exchange's own ticker time), one sample per pair per answer. A tick every FETCH_INTERVAL_MS
  makes the age climb from about zero to one interval before the next tick replaces the price,
  so the limit is the interval plus 0.5 s for fetching, writing and serving: a p99 above it
  means some slot was late or missed.
- status codes: no 5xx (nor a connection failure) however many clients poll.
- exchange load: ticker requests per slot (``floor(time / FETCH_INTERVAL_MS)``) in the
  simulator's request log, against the batches the configured pairs need
  (``ceil(pairs / batch size)``). The target is exactly that many in every slot wholly inside
  the polling window, whatever the number of pollers. The batch size is lowered so a slot needs
  several requests: "one request per batch", not merely "one request", is what is checked.
- the poll rate achieved, so a reader sees the load was really applied. A poller that falls
  behind skips the turns it missed rather than bursting to catch up; skipped turns show.

The window is 30 s, shorter than the scheduler's minute, so one fetcher invocation runs
throughout: overlapping invocations are the overlap tests' subject, not this one's.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.common import REPO_ROOT, Row, percentile, use_function_code

POLLERS = 50
POLL_INTERVAL_S = 0.5
WINDOW_S = 30.0
FETCH_INTERVAL_MS = 4_000
AGE_MARGIN_MS = 500  # fetch, write and serve, on top of one interval
# Every TRADING symbol of the simulator's default listing, three to a request: three batches.
PAIRS = ("ADA/USDT", "BNB/USDT", "BTC/USDT", "DOGE/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT")
BATCH_SIZE = 3
STARTUP_TIMEOUT_S = 15.0  # it serves within a few seconds; the e2e tests allow 10
REQUEST_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 10.0  # it lets a running tick finish first; then its process group is killed
LOAD_APPLIED_SHARE = 0.95  # below this share of the offered rate, the load was not what was asked
PRICES_PATH = "/api/market-data/prices"
HEALTH_PATH = "/api/market-data/health"
TICKER_PATH = "/api/v3/ticker/24hr"
EXCHANGE_INFO_PATH = "/api/v3/exchangeInfo"
# Local-stack settings outside the Settings struct: a value left in this process's environment
# (by another scenario, or the developer's shell) must not reach the stack under test.
LOCAL_ONLY_SETTINGS = ("PORT", "SIMULATOR_PORT", "CORS_ALLOWED_ORIGINS", "METRICS_STACK")


@dataclass
class LocalStack:
    process: subprocess.Popen[str]
    base_url: str
    simulator_url: str
    output: deque[str]  # the stack's last lines, shown when it fails to start


@dataclass
class PollerResult:
    ages_ms: list[int] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # transport errors by exception name
    latencies_ms: list[float] = field(default_factory=list)
    skipped_turns: int = 0


def _stack_environment(simulator_port: int) -> dict[str, str]:
    use_function_code()
    from market_data.config import BASE_URL_SUFFIX, Settings

    service_settings = {name.upper() for name in Settings.__struct_fields__}
    scrubbed = service_settings | set(LOCAL_ONLY_SETTINGS)
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in scrubbed and not name.startswith("POWERTOOLS_") and not name.endswith(BASE_URL_SUFFIX)
    }
    env.update(
        SIMULATOR_PORT=str(simulator_port),
        TRADING_PAIRS='["' + '","'.join(PAIRS) + '"]',
        MARKET_DATA_BATCH_SIZE=str(BATCH_SIZE),
        FETCH_INTERVAL_MS=str(FETCH_INTERVAL_MS),
        PYTHONUNBUFFERED="1",
    )
    return env


def _start_stack() -> LocalStack:
    from local_stack.servers import free_port

    api_port, simulator_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "local_stack", "--simulator", "--port", str(api_port)],
        cwd=REPO_ROOT,
        env=_stack_environment(simulator_port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the redis-server it starts goes with it
    )
    output: deque[str] = deque(maxlen=40)
    # Drained all the time: the stack prints a line per slot, and a full pipe would block it.
    threading.Thread(target=lambda: output.extend(process.stdout or ()), daemon=True).start()
    return LocalStack(process, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{simulator_port}", output)


def _stop_stack(stack: LocalStack) -> None:
    """Ctrl-C first, as a developer stops it; then the whole process group if it hangs."""
    process = stack.process
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _wait_until_serving(stack: LocalStack, deadline: float) -> None:
    """Health answers and every pair is served from the cache: the fetcher has ticked."""
    params = {"pairs": ",".join(PAIRS)}
    last: object = "nothing yet"
    with httpx.Client(base_url=stack.base_url, timeout=2) as client:
        while time.monotonic() < deadline:
            if stack.process.poll() is not None:
                break
            try:
                health = client.get(HEALTH_PATH)
                prices = client.get(PRICES_PATH, params=params)
                if health.status_code == 200 and prices.status_code == 200:
                    return
                last = f"health {health.status_code}, prices {prices.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
    tail = "".join(stack.output)
    raise RuntimeError(f"the local stack did not serve prices in time (last: {last}); its output:\n{tail}")


def _poll(client: httpx.Client, first_turn: float, until: float) -> PollerResult:
    """One client on a fixed 500 ms schedule, with its own kept-alive connection."""
    result = PollerResult()
    params = {"pairs": ",".join(PAIRS)}
    turn = first_turn
    while turn < until:
        delay = turn - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent = time.perf_counter()
        try:
            response = client.get(PRICES_PATH, params=params)
        except httpx.HTTPError as exc:
            result.failures[type(exc).__name__] += 1
        else:
            received_ms = time.time_ns() // 1_000_000
            result.latencies_ms.append((time.perf_counter() - sent) * 1000)
            result.statuses[response.status_code] += 1
            if response.status_code in (200, 206):
                for entry in response.json().values():
                    result.ages_ms.append(received_ms - int(entry["timestamp"]))
        turn += POLL_INTERVAL_S
        behind = time.monotonic() - turn
        if behind > 0:  # skip the missed turns instead of bursting to catch up
            missed = math.ceil(behind / POLL_INTERVAL_S)
            result.skipped_turns += missed
            turn += missed * POLL_INTERVAL_S
    return result


def _run_pollers(base_url: str) -> tuple[list[PollerResult], float]:
    """All pollers for WINDOW_S, their first turns spread over one interval; and when it began
    (epoch seconds), to line the window up with the simulator's request log."""
    # Clients are made before the clock starts: making 50 of them takes long enough to make the
    # first pollers miss their first turns.
    clients = [httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) for _ in range(POLLERS)]
    results: list[PollerResult] = [PollerResult() for _ in range(POLLERS)]
    start = time.monotonic() + 0.2  # every thread is up before the first turn
    wall_start = time.time() + 0.2
    until = start + WINDOW_S

    def poller(index: int) -> Callable[[], None]:
        def body() -> None:
            results[index] = _poll(clients[index], start + index * POLL_INTERVAL_S / POLLERS, until)

        return body

    threads = [threading.Thread(target=poller(i), name=f"poller-{i}", daemon=True) for i in range(POLLERS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(until - time.monotonic(), 0) + REQUEST_TIMEOUT_S + 1)
    finally:
        for client in clients:
            client.close()
    return results, wall_start


def _exchange_requests(simulator_url: str) -> list[dict[str, Any]]:
    answer = httpx.get(simulator_url + "/_simulator/requests", timeout=REQUEST_TIMEOUT_S)
    answer.raise_for_status()
    records: list[dict[str, Any]] = answer.json()
    return records


def _rows(results: list[PollerResult], records: list[dict[str, Any]], wall_start: float) -> list[Row]:
    wall_end = wall_start + WINDOW_S
    ages = [age for result in results for age in result.ages_ms]
    statuses: Counter[int] = sum((result.statuses for result in results), Counter())
    failures: Counter[str] = sum((result.failures for result in results), Counter())
    latencies = [latency for result in results for latency in result.latencies_ms]
    answered = sum(statuses.values())
    offered_rps = POLLERS / POLL_INTERVAL_S
    achieved_rps = answered / WINDOW_S
    server_errors = sum(count for status, count in statuses.items() if status >= 500)
    age_limit_ms = FETCH_INTERVAL_MS + AGE_MARGIN_MS
    case = f"{POLLERS} pollers every {POLL_INTERVAL_S * 1000:.0f} ms, {WINDOW_S:.0f} s"

    # Slots wholly inside the polling window; a partial slot at either end says nothing.
    first_slot = math.ceil(wall_start * 1000 / FETCH_INTERVAL_MS)
    last_slot = math.floor(wall_end * 1000 / FETCH_INTERVAL_MS) - 1
    full_slots = range(first_slot, last_slot + 1)
    tickers_per_slot: Counter[int] = Counter()
    exchange_info = 0
    for record in records:
        slot = math.floor(record["wall_time"] * 1000 / FETCH_INTERVAL_MS)
        if slot not in full_slots:
            continue
        if record["path"] == TICKER_PATH:
            tickers_per_slot[slot] += 1
        elif record["path"] == EXCHANGE_INFO_PATH:
            exchange_info += 1
    batches = math.ceil(len(PAIRS) / BATCH_SIZE)
    counts = [tickers_per_slot[slot] for slot in full_slots]
    off_target = sum(1 for count in counts if count != batches)

    return [
        Row(
            "freshness",
            f"data age, {case}",
            {
                "age_p50_ms": round(percentile(ages, 0.5)) if ages else None,
                "age_p99_ms": round(percentile(ages, 0.99)) if ages else None,
                "age_max_ms": max(ages) if ages else None,
                "samples": len(ages),
            },
            limit=f"interval + {AGE_MARGIN_MS / 1000} s = {age_limit_ms} ms",
            target=f"p99 age <= {age_limit_ms} ms",
            met=bool(ages) and percentile(ages, 0.99) <= age_limit_ms,
        ),
        Row(
            "freshness",
            "status codes",
            {
                **{f"http_{status}": count for status, count in sorted(statuses.items())},
                "5xx": server_errors,
                "connection_failures": sum(failures.values()),
            },
            limit=f"{answered + sum(failures.values())} requests",
            target="no 5xx, no connection failure",
            met=server_errors == 0 and not failures,
        ),
        Row(
            "freshness",
            "poll rate",
            {
                "offered_rps": round(offered_rps, 1),
                "achieved_rps": round(achieved_rps, 1),
                "skipped_turns": sum(result.skipped_turns for result in results),
                "latency_p50_ms": round(percentile(latencies, 0.5), 1) if latencies else None,
                "latency_p99_ms": round(percentile(latencies, 0.99), 1) if latencies else None,
            },
            limit=f"{offered_rps:.0f} req/s offered",
            target=f">= {LOAD_APPLIED_SHARE:.0%} of the offered rate served",
            met=achieved_rps >= LOAD_APPLIED_SHARE * offered_rps,
        ),
        Row(
            "freshness",
            f"exchange ticker requests per slot, {len(PAIRS)} pairs in batches of {BATCH_SIZE}",
            {
                "full_slots": len(counts),
                "min": min(counts) if counts else None,
                "max": max(counts) if counts else None,
                "slots_off_target": off_target,
                "exchange_info_requests": exchange_info,
            },
            limit=f"ceil({len(PAIRS)} / {BATCH_SIZE}) = {batches} batches",
            target=f"exactly {batches} per slot, whatever the number of pollers",
            met=bool(counts) and off_target == 0,
        ),
    ]


def run() -> list[Row]:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    stack = _start_stack()
    try:
        _wait_until_serving(stack, deadline)
        results, wall_start = _run_pollers(stack.base_url)
        records = _exchange_requests(stack.simulator_url)
    finally:
        _stop_stack(stack)
    return _rows(results, records, wall_start)
