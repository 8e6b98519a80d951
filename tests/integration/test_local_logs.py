"""The local stack's output is for a person: the functions' JSON log lines printed compact, one
line each with the local time, level, function, message and the line's own keys; the raw JSON on
request (``raw_logs``), as CloudWatch gets it. The lines come from the real handlers and the real
Powertools logger."""

from __future__ import annotations

import io
import json
import re
import uuid
from typing import Any

import pytest
from aws_lambda_powertools import Logger

from local_stack.binance_simulator import BinanceSimulator
from local_stack.lambda_context import LocalLambdaContext
from local_stack.metrics_view import EmfTap, LocalMetrics
from tests.integration.test_metrics import _run_handler

HHMMSS = r"\d\d:\d\d:\d\d"
LAMBDA_CONTEXT = ("function_arn", "function_request_id", "cold_start", "function_memory_size", "location")


def through_tap(printed: str, **options: Any) -> list[str]:
    """What the local stack shows for ``printed``, written in pieces as print() does."""
    shown = io.StringIO()
    tap = EmfTap(shown, LocalMetrics(), **options)
    for line in printed.splitlines(keepends=True):
        tap.write(line[:7])
        tap.write(line[7:])
    return shown.getvalue().splitlines()


@pytest.fixture
def fetcher_output(fetcher_env: dict[str, str], simulator: BinanceSimulator) -> str:
    """A fetcher invocation's stdout (JSON logs at INFO, EMF documents), its tickers refused once
    with a 429, as a cold container prints it."""
    simulator.set_fault("rate_limit", path="/api/v3/ticker/24hr", count=1, retry_after=30)
    return _run_handler("fetcher", fetcher_env, {"POWERTOOLS_LOG_LEVEL": "INFO"}).stdout


def test_the_fetchers_log_lines_read_as_one_short_line_each(fetcher_output: str) -> None:
    shown = through_tap(fetcher_output)

    [warning] = [line for line in shown if "exchange rate limit: pausing" in line]
    assert re.fullmatch(
        rf"{HHMMSS} WARNING fetcher    exchange rate limit: pausing  "
        r"exchange=binance status=429 retry_after_s=30",
        warning,
    ), warning
    [finished] = [line for line in shown if "fetcher invocation finished" in line]
    assert re.fullmatch(
        rf"{HHMMSS} INFO    fetcher    fetcher invocation finished  "
        r"slots=\d ticks=\d skippedClaimedElsewhere=0 paused=\d failed=0",
        finished,
    ), finished
    # The clock is this machine's, as on the tick lines
    [raw] = [
        json.loads(line) for line in fetcher_output.splitlines() if '"fetcher invocation finished"' in line
    ]
    assert finished.startswith(_local_hhmmss(raw["timestamp"]))
    # No JSON, no EMF document, none of the context every line repeats
    assert not [line for line in shown if line.startswith("{") and ('"level"' in line or '"_aws"' in line)]
    assert not [line for line in shown for key in LAMBDA_CONTEXT if f"{key}=" in line]
    assert any(re.match(rf"\[tick\] slot \d+ at {HHMMSS}: ", line) for line in shown)


def test_raw_logs_keeps_the_json_lines_as_cloudwatch_gets_them(fetcher_output: str) -> None:
    shown = through_tap(fetcher_output, raw_logs=True)

    logged = [line for line in fetcher_output.splitlines() if line.startswith('{"level"')]
    assert logged and [line for line in shown if line.startswith('{"level"')] == logged
    assert all(json.loads(line)["function_name"] == "fetcher" for line in logged)
    # The metric documents are still the view's, not printed
    assert any(line.startswith("[tick] slot") for line in shown)
    assert not [line for line in shown if '"_aws"' in line]


def test_an_exception_keeps_its_traceback_in_full_and_other_lines_pass_untouched() -> None:
    shown = io.StringIO()
    tap = EmfTap(shown, LocalMetrics())
    logger = Logger(service=f"local-logs-{uuid.uuid4().hex[:8]}", stream=tap, level="INFO")

    @logger.inject_lambda_context
    def handler(event: dict[str, Any], context: object) -> None:
        try:
            {}["missing"]
        except KeyError:
            logger.exception("tick failed", slot=7, reason="a reason with spaces")

    handler({}, LocalLambdaContext("PricesApiFunction", 5))
    tap.write("[local] serving on http://127.0.0.1:3000\n")
    tap.write('{"not": "a log line"}\n{broken\n')

    head, *traceback, plain, other_json, broken = shown.getvalue().splitlines()
    assert re.fullmatch(
        rf'{HHMMSS} ERROR   prices-api tick failed  slot=7 reason="a reason with spaces"', head
    ), head
    assert traceback[0] == "Traceback (most recent call last):"
    assert '{}["missing"]' in "\n".join(traceback) and traceback[-1] == "KeyError: 'missing'"
    assert (plain, other_json, broken) == (
        "[local] serving on http://127.0.0.1:3000",
        '{"not": "a log line"}',
        "{broken",
    )


def _local_hhmmss(timestamp: str) -> str:
    from datetime import datetime

    return datetime.fromisoformat(timestamp.replace(",", ".")).astimezone().strftime("%H:%M:%S")
