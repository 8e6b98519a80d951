"""Paths and small helpers the tests share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
# ../shared sits beside the clone, here and in CI.
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"
EVENTS = REPO_ROOT / "events"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def simulator_fixtures(start: Any, ssl_context: Any) -> tuple[Any, Any]:
    """An exchange simulator's test fixtures: the simulator ``start()`` makes, running for one test, and a
    plain-HTTP client on its base URL (``ssl_context`` shared: loading CA certificates costs ~0.15 s a
    client). Bind them as ``sim, client = simulator_fixtures(...)``: pytest names a fixture after its
    module attribute, and the client fixture asks for ``sim``."""
    from collections.abc import Iterator

    import httpx
    import pytest

    @pytest.fixture
    def sim() -> Iterator[Any]:
        with start() as simulator:
            yield simulator

    @pytest.fixture
    def client(sim: Any) -> Iterator[httpx.Client]:
        with httpx.Client(verify=ssl_context, base_url=sim.base_url, timeout=5) as http:
            yield http

    return sim, client


def answering_http(
    status: int, body: bytes | str | dict[str, Any], headers: dict[str, str] | None = None
) -> Any:
    """An ``httpx.Client`` whose transport answers every request with one response (a dict body is
    sent as JSON), and the list of requests it received: ``http, seen = answering_http(...)``."""
    import httpx

    content = json.dumps(body).encode() if isinstance(body, dict) else body
    payload = content if isinstance(content, bytes) else content.encode()
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, content=payload, headers=headers)

    return httpx.Client(transport=httpx.MockTransport(answer)), seen


def failing_transactions(table: Any, code: str, times: int) -> Any:
    """Make the next ``times`` TransactWriteItems calls on ``table``'s client come back cancelled
    for ``code`` (TransactionConflict, ThrottlingError, ...), as DynamoDB answers them: the error
    is parsed and raised by botocore itself. Returns a function that stops it early."""
    from botocore.awsrequest import AWSResponse

    left = [times]

    def cancel(model: Any, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if left[0] <= 0:
            return None
        left[0] -= 1
        reasons = [{"Code": code, "Message": f"simulated {code}"}] + [{"Code": "None"}] * (
            len(params.get("TransactItems", [])) - 1
        )
        error = {"Code": "TransactionCanceledException", "Message": f"Transaction cancelled [{code}]"}
        parsed = {"Error": error, "CancellationReasons": reasons, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return AWSResponse("https://dynamodb.local", 400, {}, None), parsed

    events = table.meta.client.meta.events
    events.register("before-call.dynamodb.TransactWriteItems", cancel, unique_id="failing-transactions")
    return lambda: events.unregister(
        "before-call.dynamodb.TransactWriteItems", unique_id="failing-transactions"
    )


def submitted(table: Any, *pairs: str) -> None:
    """``pairs`` submitted now, as the whitelist function records them (caps out of the way)."""
    from market_data import store
    from market_data.clock import now_ms

    for pair in pairs:
        store.create_submission(
            table, pair, source="192.0.2.1", now_ms=now_ms(), max_pending=100, max_per_source=100
        )
