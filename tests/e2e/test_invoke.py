"""``make invoke``: every sample event in events/ through its function's real handler, run as a user
runs it (a child process), against a real redis-server and moto over HTTP."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local_stack.servers import port_in_use
from tests.support import EVENTS, REPO_ROOT

pytestmark = pytest.mark.e2e
# A developer's shell must not point the runs elsewhere.
SCRUBBED = (
    "REDIS_URL", "DYNAMODB_ENDPOINT_URL", "MARKET_DATA_TABLE_NAME", "LOCAL_STACK_DIR", "EXCHANGES",
    "TRADING_PAIRS", "ADMIN_PRINCIPALS", "BINANCE_API_BASE_URL", "BINANCE_US_API_BASE_URL",
    "COINBASE_API_BASE_URL", "KRAKEN_API_BASE_URL", "FETCH_INTERVAL_MS", "POWERTOOLS_LOG_LEVEL",
)  # fmt: skip

# The answer each event gets from empty services (a new table, an empty cache): the response's
# statusCode, "ticked" for the fetcher's summary, or "broadcast" for the broadcaster's. An event
# file added to events/ needs a line here.
EXPECTED: dict[str, int | str] = {
    "fetcher_schedule.json": "ticked",  # on the simulators, for a couple of slots
    "health_get.json": 503,  # no fetcher heartbeat: down
    "history_get.json": 404,  # a new table: BTC/USDT was never listed
    "init_get.json": 503,
    "openapi_get.json": 200,
    "page_get.json": 200,  # the live page
    "prices_all.json": 503,  # a cold cache: nothing to serve yet
    "prices_bad_pairs.json": 400,
    "prices_get.json": 503,
    "prices_sparkline.json": 503,
    "prices_not_listed.json": 503,  # a cold cache cannot tell a pair is not listed
    "prices_unknown_parameter.json": 400,
    "whitelist_approve.json": 404,  # SOL/USDT was never submitted
    "whitelist_get.json": 404,
    "whitelist_list.json": 200,
    "whitelist_revoke.json": 404,
    "whitelist_submit.json": 202,
    "stream_connect.json": 200,  # registered in the table
    "stream_disconnect.json": 200,
    "stream_subscribe.json": 503,  # no WebSocket API to post the snapshot to without a running stack
    "broadcaster_slot.json": "broadcast",  # nobody connected: nothing sent
}
# What an event needs beside itself: the fetcher, exchanges to ask and a context of a few slots.
ARGS = {
    "fetcher_schedule.json": ["--simulator", "--timeout", "12"],
    "broadcaster_slot.json": ["--function", "BroadcasterFunction"],  # a payload, not an API event
}


def invoke(*args: str, env: dict[str, str], timeout_s: float = 90) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in SCRUBBED} | env
    return subprocess.run(
        [sys.executable, "-m", "local_stack.invoke", *args],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip


@pytest.mark.parametrize("event", sorted(EVENTS.glob("*.json")), ids=lambda path: path.name)
def test_each_sample_event_gets_its_answer(
    event: Path, redis_url: str, moto_endpoint: str, table_name: str, tmp_path: Path
) -> None:
    assert event.name in EXPECTED, (
        f"events/{event.name} has no expected answer: add one to EXPECTED in {__file__}"
    )
    services = {
        "REDIS_URL": redis_url,
        "DYNAMODB_ENDPOINT_URL": moto_endpoint,
        "MARKET_DATA_TABLE_NAME": table_name,
    }

    result = invoke(
        f"events/{event.name}", *ARGS.get(event.name, []), env=services | {"LOCAL_STACK_DIR": str(tmp_path)}
    )

    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout)  # the response document, alone on stdout
    if EXPECTED[event.name] == "ticked":
        assert answer["ticks"] >= 1 and answer["failed"] == 0, (answer, result.stderr[-3000:])
    elif EXPECTED[event.name] == "broadcast":
        assert (answer["connections"], answer["sent"]) == (0, 0), (answer, result.stderr[-3000:])
    else:
        assert answer["statusCode"] == EXPECTED[event.name], (answer, result.stderr[-3000:])


def test_without_a_running_stack_it_starts_fresh_services_and_stops_them(tmp_path: Path) -> None:
    result = invoke("events/prices_get.json", env={"LOCAL_STACK_DIR": str(tmp_path)})

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["statusCode"] == 503  # empty, as a cold cache is
    assert "local services for this run only" in result.stderr
    redis = re.search(r"redis-server started on redis://127.0.0.1:(\d+)", result.stderr)
    moto = re.search(r"DynamoDB stand-in \(moto\) on http://127.0.0.1:(\d+)", result.stderr)
    assert redis and moto, result.stderr
    assert not port_in_use(int(redis.group(1))) and not port_in_use(int(moto.group(1)))


def test_a_function_it_does_not_know_is_named_with_the_ones_it_does(tmp_path: Path) -> None:
    result = invoke(
        "events/prices_get.json", "--function", "PriceFunction", env={"LOCAL_STACK_DIR": str(tmp_path)}
    )

    assert result.returncode == 2 and result.stdout == ""
    assert "'PriceFunction'" in result.stderr and "PricesApiFunction" in result.stderr
    assert "started" not in result.stderr  # nothing was


def test_make_invoke_prints_the_response_document_alone_on_stdout(
    redis_url: str, moto_endpoint: str, table_name: str, tmp_path: Path
) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    environment = {k: v for k, v in os.environ.items() if k not in SCRUBBED} | {
        "REDIS_URL": redis_url,
        "DYNAMODB_ENDPOINT_URL": moto_endpoint,
        "MARKET_DATA_TABLE_NAME": table_name,
        "LOCAL_STACK_DIR": str(tmp_path),
    }
    command = ["make", "--no-print-directory", "invoke", "FUNCTION=WhitelistFunction"]
    result = subprocess.run(
        [*command, "EVENT=events/whitelist_submit.json"],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=90,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1  # one line: the document, nothing make or the logs print
    answer = json.loads(result.stdout)
    assert answer["statusCode"] == 202 and json.loads(answer["body"])["pair"] == "SOL/USDT"
    assert "pair submitted" in result.stderr  # the function's log, on stderr


def test_ctrl_c_ends_a_fetcher_run_with_its_summary(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if k not in SCRUBBED} | {
        "LOCAL_STACK_DIR": str(tmp_path)
    }
    # Its template timeout (150 s): it would tick for 130 s unless interrupted
    process = subprocess.Popen(
        [sys.executable, "-m", "local_stack.invoke", "events/fetcher_schedule.json", "--simulator"],
        cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        logged: list[str] = []
        deadline = time.monotonic() + 40
        while not any(line.startswith("[tick] slot") for line in logged) and time.monotonic() < deadline:
            ready, _, _ = select.select([process.stderr], [], [], 1)
            if ready:
                logged.append(process.stderr.readline())
        assert any(line.startswith("[tick] slot") for line in logged), logged

        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as a terminal sends it
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["ticks"] >= 1 and summary["failed"] == 0, summary
    assert "told no time is left" in stderr
