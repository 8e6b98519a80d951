"""What the metrics and health say matches what happened: counted on the simulator, the cache and
the handlers' own printed documents."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from fetcher.deps import Fetcher
from fetcher.loop import LoopSummary, run_slot
from fetcher.reporting import TRANSITION_METRICS
from local_stack.binance_simulator import BinanceSimulator
from local_stack.lambda_context import LocalLambdaContext
from market_data import cache, store
from market_data.clock import now_ms
from market_data.observability import RequestMetrics
from tests.integration.test_metrics_contract import emf_documents
from tests.support import REPO_ROOT, load_event, submitted


def values(document: dict[str, Any]) -> dict[str, Any]:
    """Metric name -> value (one sample) or list of samples, as the document carries them."""
    names = [m["Name"] for d in document["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]]
    return {name: document[name][0] if len(document[name]) == 1 else document[name] for name in names}


def slot_document(printed: str, slot: int) -> dict[str, Any]:
    [document] = [d for d in emf_documents(printed) if d.get("slot") == slot]
    return document


def current_slot(container: Fetcher) -> int:
    return now_ms() // container.deps.settings.fetch_interval_ms


# --------------------------------------------------------------------------- fetcher


def test_a_tick_reports_latency_pairs_weight_and_sync_gap_as_measured(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    container = make_container()
    simulator.set_fault("latency", path="/api/v3/ticker/24hr", latency_ms=60)
    slot = current_slot(container)

    run_slot(container, slot, "metrics-test", LoopSummary())

    document = slot_document(capsys.readouterr().out, slot)
    figures = values(document)
    assert document["service"] == "fetcher" and document["outcome"] == "ticked"
    assert figures["Heartbeats"] == 1 and figures["Ticks"] == 1 and figures["TicksPaused"] == 0
    assert figures["PairsFetched"] == 2 and figures["PairsMissing"] == 0 and figures["PairsRejected"] == 0
    # A fresh container reads the listing (exchangeInfo), then the one batch of tickers.
    assert figures["ExchangeRequests"] == len(simulator.requests) == 2 and figures["ExchangeErrors"] == 0
    assert 60 <= figures["FetchLatency"] <= figures["TickDuration"]
    # The weight the exchange reported on its answer, which is what it counted.
    assert figures["ExchangeWeightUsed"] == simulator.used_weight
    # Exchange ticker time to visible, one sample per pair: the exchange stamps the ticker when it
    # answers (after the 60 ms), so the gap is what follows the answer: parsing and the write.
    assert len(figures["SyncGap"]) == 2 and all(
        0 <= gap < figures["FetchLatency"] for gap in figures["SyncGap"]
    )
    assert figures["CacheWriteLatency"] >= 0 and figures["LastKnownGoodWrites"] == 2


def test_the_ticks_own_weight_is_told_apart_from_the_exchanges_count_for_the_minute(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    import httpx

    from local_stack.metrics_view import tick_line

    container = make_container()
    if now_ms() % 60_000 > 50_000:  # Binance counts per wall-clock minute: all of this in one
        time.sleep((60_000 - now_ms() % 60_000) / 1000 + 0.1)
    # Another client behind the same address spends weight this minute
    httpx.get(simulator.base_url + "/api/v3/exchangeInfo", timeout=5).raise_for_status()
    others = simulator.used_weight
    slot = current_slot(container)

    run_slot(container, slot, "metrics-test", LoopSummary())
    run_slot(container, slot + 1, "metrics-test", LoopSummary())

    printed = capsys.readouterr().out
    first, second = slot_document(printed, slot), slot_document(printed, slot + 1)
    charged = [record.weight for record in simulator.requests[1:]]  # the ticks' own requests
    # The first tick read the listing (20) and one batch (2); the second, one batch
    assert values(first)["ExchangeWeightSpent"] == 22 and values(second)["ExchangeWeightSpent"] == 2
    assert sum(charged) == 24
    # The exchange's count for the minute stays what the dashboard charts: everyone's
    assert values(second)["ExchangeWeightUsed"] == simulator.used_weight == others + 24
    # and the local tick line says both, labelled, with the slot's wall-clock time
    at = time.strftime("%H:%M:%S", time.localtime(second["_aws"]["Timestamp"] / 1000))
    line = tick_line(second)
    assert line is not None and line.startswith(f"[tick] slot {slot + 1} at {at}: 2 pairs")
    assert f"1 requests, weight 2 (binance {others + 24}/6000 this minute)" in line


def test_a_paused_slot_counts_a_heartbeat_and_every_active_pair_as_missing(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    container = make_container()
    slot = current_slot(container)
    run_slot(container, slot, "metrics-test", LoopSummary())  # reads the registry: two active pairs
    simulator.set_fault("rate_limit", path="/api/v3/ticker/24hr", count=1, retry_after=30)
    run_slot(container, slot + 1, "metrics-test", LoopSummary())  # 429: a ban is kept
    requests_before = len(simulator.requests)

    run_slot(container, slot + 2, "metrics-test", LoopSummary())

    printed = capsys.readouterr().out
    banned = emf_documents(printed)
    assert any(d.get("kind") == "rate_limited" and values(d)["ExchangeErrorsByKind"] == 1 for d in banned)
    paused = values(slot_document(printed, slot + 2))
    assert paused["Heartbeats"] == 1 and paused["TicksPaused"] == 1 and paused["Ticks"] == 0
    assert paused["PairsMissing"] == 2  # what the data-stale alarm watches
    assert "FetchLatency" not in paused and "PairsFetched" not in paused
    assert len(simulator.requests) == requests_before


def test_a_slot_claimed_elsewhere_counts_a_heartbeat_but_no_pairs(
    make_container: Callable[..., Fetcher], capsys: pytest.CaptureFixture[str]
) -> None:
    container = make_container()
    slot = current_slot(container)
    container.deps.redis.set(cache.claim_key(slot), "another-invocation")

    run_slot(container, slot, "metrics-test", LoopSummary())

    skipped = values(slot_document(capsys.readouterr().out, slot))
    assert skipped["Heartbeats"] == 1 and skipped["TicksSkippedClaimedElsewhere"] == 1
    assert "PairsMissing" not in skipped  # only the slot's owner speaks for the data


def test_the_circuit_metric_follows_the_breaker(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    container = make_container()
    simulator.set_fault("server_error")  # every request fails until cleared
    slot = current_slot(container)
    outcomes = []
    for offset in range(8):
        run_slot(container, slot + offset, "metrics-test", LoopSummary())
        outcomes.append(values(slot_document(capsys.readouterr().out, slot + offset))["CircuitOpen"])

    assert outcomes[0] == 0 and outcomes[-1] == 1


def _tick_with_statuses(
    container: Fetcher, slot: int, capsys: pytest.CaptureFixture[str], *pairs: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """One slot: its transition metrics, and the registry status of ``pairs`` after it."""
    summary = LoopSummary()
    run_slot(container, slot, "metrics-test", summary)
    assert summary.failed == 0
    figures = values(slot_document(capsys.readouterr().out, slot))
    statuses = {}
    for pair in pairs:
        record = store.get_record(container.deps.table, pair)
        assert record is not None
        statuses[pair] = record.status
    return {name: figures[name] for name in TRANSITION_METRICS.values()}, statuses


def test_whitelist_status_changes_are_counted_on_the_tick_that_makes_them(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    container = make_container()
    slot = current_slot(container)
    none = dict.fromkeys(TRANSITION_METRICS.values(), 0)
    # The seeded pairs start active: no status change, and the metrics say so.
    assert _tick_with_statuses(container, slot, capsys, "ETH/USDT") == (none, {"ETH/USDT": "active"})
    submitted(container.deps.table, "SOL/USDT", "FOO/USDT")  # listed and trading; not listed at all

    # A submission makes the tick re-read the listing: both are judged on the next tick, once.
    figures, statuses = _tick_with_statuses(container, slot + 1, capsys, "SOL/USDT", "FOO/USDT")
    assert statuses == {"SOL/USDT": "active", "FOO/USDT": "rejected"}
    assert figures == {**none, "WhitelistVerified": 1, "WhitelistRejected": 1}
    assert _tick_with_statuses(container, slot + 2, capsys)[0] == none  # counted once, not per tick

    # The exchange halts ETH/USDT; the next re-read of the listing suspends it, and back.
    simulator.set_status("ETHUSDT", "HALT")
    container.state.exchanges["binance"].listing.next_read_at = 0
    figures, statuses = _tick_with_statuses(container, slot + 3, capsys, "ETH/USDT")
    assert statuses == {"ETH/USDT": "suspended"}
    assert figures == {**none, "WhitelistSuspended": 1}

    simulator.set_status("ETHUSDT", "TRADING")
    container.state.exchanges["binance"].listing.next_read_at = 0
    figures, statuses = _tick_with_statuses(container, slot + 4, capsys, "ETH/USDT")
    assert statuses == {"ETH/USDT": "active"}
    assert figures == {**none, "WhitelistRestored": 1}


# --------------------------------------------------------------------------- API functions


def test_api_metrics_are_one_document_per_window_not_one_per_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    windows: list[tuple[dict[str, float], list[float]]] = []
    metrics = RequestMetrics(
        "prices-api",
        "ReadLatency",
        flush_interval_s=3600,
        on_flush=lambda counts, samples: windows.append((dict(counts), samples)),
    )
    for latency in (1.0, 2.0, 3.0):
        metrics.add_counts({"PairsServedFresh": 2, "PairsServedMissing": 0})
        metrics.record_response(200, latency)
    metrics.record_response(503, 0.5)
    metrics.record_response(400, None)
    assert emf_documents(capsys.readouterr().out) == []  # nothing printed per request

    metrics.flush()

    [document] = emf_documents(capsys.readouterr().out)
    figures = values(document)
    assert figures["Responses2xx"] == 3 and figures["ResponsesUnavailable"] == 1
    assert figures["Responses4xx"] == 1 and "Responses5xx" not in figures  # a designed 503 is no 5xx
    assert figures["ReadLatency"] == [1.0, 2.0, 3.0, 0.5] and figures["PairsServedFresh"] == 6
    assert windows == [(windows[0][0], [1.0, 2.0, 3.0, 0.5])] and windows[0][0]["PairsServedFresh"] == 6


def test_a_server_error_or_a_full_window_is_printed_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    metrics = RequestMetrics("prices-api", "ReadLatency", flush_interval_s=3600)
    metrics.record_response(200, 1.0)
    metrics.record_response(500, 2.0)  # an alarm waits for this one: no holding it back
    [first] = emf_documents(capsys.readouterr().out)
    assert values(first)["Responses5xx"] == 1 and values(first)["Responses2xx"] == 1

    for _ in range(99):
        metrics.record_response(200, 1.0)
    [full] = emf_documents(capsys.readouterr().out)
    assert len(full["ReadLatency"]) == 99  # EMF's 100-value cap is never reached

    metrics.flush()
    assert emf_documents(capsys.readouterr().out) == []  # an empty window prints nothing


def test_requests_on_many_threads_lose_no_sample_and_never_overfill_a_document(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The local stack's gateway serves requests on threads: a window can fill on two at once.
    metrics = RequestMetrics("prices-api", "ReadLatency", flush_interval_s=3600)

    def serve(_: int) -> None:
        for _ in range(250):
            metrics.record_response(200, 1.0)

    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often, as busy ones do
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(serve, range(8)))
    finally:
        sys.setswitchinterval(switch_interval)
    metrics.flush()

    documents = emf_documents(capsys.readouterr().out)
    assert all(len(document["ReadLatency"]) <= 99 for document in documents)
    assert sum(len(document["ReadLatency"]) for document in documents) == 2_000
    assert sum(values(document).get("Responses2xx", 0) for document in documents) == 2_000


@pytest.mark.parametrize("table", ["empty", "unreachable"])
def test_a_designed_503_from_the_prices_handler_is_counted_unavailable_not_as_a_server_error(
    service_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    table: str,
) -> None:
    import prices_api.handler as prices
    from market_data.config import get_settings

    if table == "unreachable":  # DynamoDB refuses the connection: last known good is lost too
        monkeypatch.setenv("DYNAMODB_ENDPOINT_URL", "http://127.0.0.1:9")
        get_settings.cache_clear()
        store.reset_table()
    prices.read_metrics.flush()  # earlier requests in this process land here: start afresh
    capsys.readouterr()

    # A cold cache (reachable, never filled), and nothing to fall back on.
    response = prices.lambda_handler(load_event("prices_get.json"), LocalLambdaContext("prices", 6))
    prices.read_metrics.flush()

    assert response["statusCode"] == 503
    fell_back = [r for r in caplog.records if r.getMessage() == "last known good unreachable too"]
    assert len(fell_back) == (table == "unreachable")
    [document] = [d for d in emf_documents(capsys.readouterr().out) if d["service"] == "prices-api"]
    figures = values(document)
    assert figures["ResponsesUnavailable"] == 1 and figures["PairsServedMissing"] == 2
    # What the server-error alarm counts stays silent: a cold start of the service pages nobody.
    assert "Responses5xx" not in figures and "Responses2xx" not in figures
    assert isinstance(figures["ReadLatency"], float)  # the request's latency, one sample


def _whitelist_submit(pair: str | None, source_ip: str) -> int:
    import whitelist.handler as whitelist

    event = copy.deepcopy(load_event("whitelist_submit.json"))
    event["body"] = json.dumps({"pair": pair}) if pair else "not json"
    event["requestContext"]["http"]["sourceIp"] = source_ip
    status: int = whitelist.lambda_handler(event, LocalLambdaContext("whitelist", 6))["statusCode"]
    return status


def test_whitelist_submissions_and_refusals_are_counted_as_answered(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import whitelist.handler as whitelist
    from market_data.config import get_settings

    monkeypatch.setenv("WHITELIST_MAX_PER_SOURCE_PER_HOUR", "2")
    monkeypatch.setenv("WHITELIST_MAX_PENDING", "2")
    get_settings.cache_clear()
    whitelist.request_metrics.flush()  # earlier requests in this process land here: start afresh
    capsys.readouterr()

    answers = [
        _whitelist_submit("SOL/USDT", "203.0.113.7"),  # new: pending
        _whitelist_submit("SOL/USDT", "203.0.113.7"),  # a retry: the known record, not counted
        _whitelist_submit("ADA/USDT", "203.0.113.7"),  # new: pending (two waiting now)
        _whitelist_submit("XRP/USDT", "203.0.113.7"),  # the address's hourly cap
        _whitelist_submit("DOT/USDT", "198.51.100.9"),  # another address: the pending cap
        _whitelist_submit(None, "198.51.100.9"),  # a malformed body
    ]
    whitelist.request_metrics.flush()

    assert answers == [202, 200, 202, 429, 429, 400]
    documents = [d for d in emf_documents(capsys.readouterr().out) if d["service"] == "whitelist"]
    totals: dict[str, float] = {}
    for document in documents:  # a window may close mid-sequence: sum the documents
        for name, value in values(document).items():
            if name != "RequestLatency":
                totals[name] = totals.get(name, 0) + value
    assert totals == {
        "WhitelistSubmissions": 2, "WhitelistRefusedByCap": 2, "Responses2xx": 3, "Responses4xx": 3,
    }  # fmt: skip
    assert sum(len(document["RequestLatency"]) for document in documents) == len(answers)


# --------------------------------------------------------------------------- health


@pytest.mark.usefixtures("fetcher_env")
def test_health_tells_sync_and_read_latency_gap_hit_rate_and_pairs_by_status(
    make_container: Callable[..., Fetcher],
) -> None:
    import prices_api.handler as prices

    container = make_container()
    run_slot(container, current_slot(container), "metrics-test", LoopSummary())
    context = LocalLambdaContext("prices", 6)
    event = load_event("prices_get.json")  # BTC/USDT and ETH/USDT, both fresh
    unlisted = {**event, "queryStringParameters": {"pairs": "BTC/USDT,XRP/USDT"}}
    prices.read_metrics.flush()  # earlier requests in this process land here: start afresh
    window = now_ms() // cache.READS_WINDOW_MS
    for minute in (window - 1, window, window + 1):
        container.deps.redis.delete(cache.reads_key(minute), cache.read_latency_key(minute))
    for _ in range(3):
        prices.lambda_handler(event, context)
    prices.lambda_handler(unlisted, context)  # 206: one fresh, one missing
    prices.read_metrics.flush()
    # A second container's window joins the same minute.
    other = RequestMetrics("prices-api", "ReadLatency", on_flush=prices.share_read_window)
    other.add_counts({"PairsServedStale": 1})
    other.record_response(200, 1_000.0)  # slower than any request here: the p99
    other.flush()

    body = json.loads(prices.lambda_handler(load_event("health_get.json"), context)["body"])

    data, cached = body["dataHealth"], body["cacheHealth"]
    assert data["syncLatencyMs"] is not None and data["syncLatencyMs"] >= 0
    assert data["syncGapMs"]["p50"] <= data["syncGapMs"]["max"] < 5_000
    assert data["cacheWriteMs"] >= 0
    assert data["readLatencyMs"]["samples"] == 5 and 0 < data["readLatencyMs"]["p50"] < 1_000.0
    assert data["readLatencyMs"]["p99"] == 1_000.0
    assert cached["pairsServed"] == {"fresh": 7, "stale": 1, "lastKnownGood": 0, "missing": 1}
    assert cached["hitRate"] == round(7 / 9, 4) and cached["requests"] == 5
    assert body["fetcher"]["pairsByStatus"] == {"active": 2}
    assert body["fetcher"]["circuitState"] == "closed" and body["fetcher"]["usedWeight"] > 0


# --------------------------------------------------------------------------- logs and tracing


# Each function's handler, its event, and the Lambda timeout its context gets: the fetcher's
# loop ticks while a slot (2 s here) and its 2 s margin fit before the deadline, so 7 s makes its
# invocation one or two slots, with room for a slow import on a loaded machine.
HANDLERS = {
    "prices_api": ("prices_api.handler", "prices_get.json", 6),
    "whitelist": ("whitelist.handler", "whitelist_list.json", 6),
    "fetcher": ("fetcher.handler", "fetcher_schedule.json", 7),
}


def _run_handler(
    function: str, env: dict[str, str], extra: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """A function's handler in a fresh process, as a cold Lambda container would import it."""
    module, event, timeout_s = HANDLERS[function]
    script = textwrap.dedent(
        f"""
        import json, sys
        from local_stack.lambda_context import LocalLambdaContext
        from tests.support import load_event
        import {module} as handler
        context = LocalLambdaContext("{function}", {timeout_s})
        response = handler.lambda_handler(load_event("{event}"), context)
        # The API's status; for the fetcher, whether its slot ran and how many failed.
        status = response.get("statusCode") or [response["slots"] >= 1, response["failed"]]
        print(json.dumps({{"status": status, "xray": "aws_xray_sdk" in sys.modules}}))
        """
    )
    paths = [REPO_ROOT / "layers/common", REPO_ROOT / "functions" / function, REPO_ROOT]
    full_env = {
        **os.environ, **env, **extra,
        "PYTHONPATH": os.pathsep.join(str(p) for p in paths),
        "POWERTOOLS_SERVICE_NAME": "market-data",
    }  # fmt: skip
    return subprocess.run(
        [sys.executable, "-c", script], env=full_env, capture_output=True, text=True, timeout=60, check=True
    )


def _log_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith('{"level"')]


def test_the_read_path_logs_no_line_per_request_unless_sampled(fetcher_env: dict[str, str]) -> None:
    quiet = _run_handler(
        "prices_api", fetcher_env, {"POWERTOOLS_LOG_LEVEL": "INFO", "POWERTOOLS_LOGGER_SAMPLE_RATE": "0"}
    )
    assert _log_lines(quiet.stdout) == []

    sampled = _run_handler(
        "prices_api", fetcher_env, {"POWERTOOLS_LOG_LEVEL": "INFO", "POWERTOOLS_LOGGER_SAMPLE_RATE": "1"}
    )
    [line] = [entry for entry in _log_lines(sampled.stdout) if entry["message"] == "request served"]
    event = load_event("prices_get.json")
    assert line["correlation_id"] == event["requestContext"]["requestId"]
    assert line["cold_start"] is True and line["status"] in (200, 206, 503)
    assert "body" not in line and "event" not in line  # no request or response bodies


@pytest.mark.parametrize("function", sorted(HANDLERS))
def test_tracing_is_off_by_default_and_the_xray_sdk_not_even_imported(
    fetcher_env: dict[str, str], function: str
) -> None:
    from local_stack.template import load_template

    parameter = load_template()["Parameters"]["Tracing"]
    assert parameter["Default"] == "Disabled"

    off = json.loads(
        _run_handler(function, fetcher_env, {"POWERTOOLS_TRACE_DISABLED": "true"}).stdout.splitlines()[-1]
    )
    assert off["xray"] is False

    on = _run_handler(
        function,
        fetcher_env,
        {"POWERTOOLS_TRACE_DISABLED": "false", "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR"},
    )
    traced = json.loads(on.stdout.splitlines()[-1])
    assert traced["xray"] is True and traced["status"] == off["status"]
    assert off["status"] in (200, 206, 503, [True, 0])


def test_metric_documents_and_log_lines_from_two_threads_never_share_a_line() -> None:
    # The fetcher's candle roll-up logs from its own thread while the loop prints its documents:
    # every line of stdout must still be one whole JSON object, or CloudWatch reads neither.
    script = textwrap.dedent(
        """
        import threading
        from market_data.observability import emit_metrics, logger

        def log():
            for i in range(3000):
                logger.info("hourly candles written", hour=i, pairs=0)

        def metrics():
            for i in range(3000):
                emit_metrics("fetcher", {"Ticks": 1, "TickDuration": [40.0, 41.0]})

        threads = [threading.Thread(target=log), threading.Thread(target=metrics)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        """
    )
    env = {
        **os.environ, "PYTHONPATH": str(REPO_ROOT / "layers/common"), "POWERTOOLS_SERVICE_NAME": "fetcher",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 6000
    broken = [line[:120] for line in lines if not _whole_json(line)]
    assert broken == []


def _whole_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
