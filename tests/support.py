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
