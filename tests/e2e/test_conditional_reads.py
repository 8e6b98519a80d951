"""Cheaper reads through the local stack over real HTTP: gzip when asked, 304 for an unchanged
slot, a max-age that ends with the slot, and health computed once per slot."""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.test_local_stack import PAIRS, Stack, start_stack, stop_stack, wait_for

INTERVAL_S = 4  # the local stack's FETCH_INTERVAL_MS


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("conditional"))
    try:
        wait_for(
            lambda: running.get("/api/market-data/prices", params={"pairs": PAIRS}).status_code == 200,
            30,
            "prices",
        )
        yield running
    finally:
        stop_stack(running)


def raw_get(stack: Stack, path: str, headers: dict[str, str]) -> tuple[httpx.Response, bytes]:
    """The answer and its body as it went over the wire (not inflated)."""
    with httpx.Client(base_url=stack.base, timeout=5) as client:
        response = client.send(client.build_request("GET", path, headers=headers), stream=True)
        try:
            return response, b"".join(response.iter_raw())
        finally:
            response.close()


def test_gzip_when_asked_and_identity_when_not(stack: Stack) -> None:
    zipped, wire = raw_get(stack, "/api/market-data/prices", {"Accept-Encoding": "gzip, deflate"})
    assert zipped.status_code == 200 and zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"] == "Accept-Encoding"
    plain, plain_wire = raw_get(stack, "/api/market-data/prices", {"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.headers["vary"] == "Accept-Encoding"
    # The same pairs either way, the bytes gzip's own and fewer (the ratio for 20 pairs is make bench's).
    assert set(json.loads(gzip.decompress(wire))) == set(json.loads(plain_wire))
    assert len(wire) < len(plain_wire) / 2
    refused, _ = raw_get(stack, "/api/market-data/prices", {"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers


def test_an_unchanged_slot_is_a_304_and_the_next_tick_a_200(stack: Stack) -> None:
    def revalidated() -> tuple[httpx.Response, httpx.Response]:
        first = stack.get("/api/market-data/prices", params={"pairs": PAIRS})
        again = stack.get(
            "/api/market-data/prices",
            params={"pairs": PAIRS},
            headers={"If-None-Match": first.headers["etag"]},
        )
        return first, again

    for _ in range(5):  # a tick may land between the two reads: then the next pair of reads
        first, again = revalidated()
        if again.status_code == 304:
            break
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == first.headers["etag"] and "max-age=" in again.headers["cache-control"]
    assert first.headers["etag"].startswith('W/"') and "last-modified" in first.headers

    def changed() -> bool:
        later = stack.get(
            "/api/market-data/prices",
            params={"pairs": PAIRS},
            headers={"If-None-Match": first.headers["etag"]},
        )
        return later.status_code == 200 and later.headers["etag"] != first.headers["etag"]

    wait_for(changed, 3 * INTERVAL_S, "a 200 with a new ETag after the next tick")


def test_max_age_ends_with_the_slot(stack: Stack) -> None:
    seen = []
    for _ in range(9):
        answer = stack.get("/api/market-data/prices", params={"pairs": PAIRS})
        match = re.search(r"max-age=(\d+)", answer.headers["cache-control"])
        assert match is not None and answer.headers["cache-control"].startswith("public")
        left = INTERVAL_S - time.time() % INTERVAL_S  # seconds to the slot's end, by this clock
        seen.append(int(match.group(1)))
        assert int(match.group(1)) <= left + 0.5  # never past the slot it belongs to
        time.sleep(0.5)
    assert max(seen) >= 2 and min(seen) == 0  # it shrinks through a slot, to none at its end


def test_health_is_computed_once_a_slot_and_served_from_that_copy(stack: Stack) -> None:
    def same_slot_pair() -> tuple[bytes, bytes]:
        while time.time() % INTERVAL_S > INTERVAL_S - 1.5:  # room for both in one slot
            time.sleep(0.2)
        first = stack.get("/api/market-data/health").content
        time.sleep(0.3)
        return first, stack.get("/api/market-data/health").content

    first, second = same_slot_pair()
    assert first == second  # byte for byte: one computation, shared
    wait_for(
        lambda: stack.get("/api/market-data/health").content != first,
        3 * INTERVAL_S,
        "the next slot's health",
    )
