"""Prices pushed over the WebSocket API: ``make demo``'s stack in a subprocess, a real ``websockets``
client on ws://127.0.0.1:$PORT/ws, the fetcher, the broadcaster and the management API between."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.e2e.test_local_stack import PAIRS, Stack, start_stack, stop_stack, wait_for

pytestmark = pytest.mark.e2e
HEARTBEAT_WITHIN_S = 30


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("stream"))
    wait_for(
        lambda: stack.get("/api/market-data/prices", params={"pairs": PAIRS}).status_code == 200,
        30,
        "the first tick's prices",
    )
    yield stack
    stop_stack(stack)


def ws_url(stack: Stack) -> str:
    return stack.base.replace("http://", "ws://") + "/ws"


def environment(stack: Stack) -> dict[str, str]:
    """The functions' environment as the running stack recorded it (its Redis and DynamoDB)."""
    return dict(json.loads((stack.local_dir / "stack.json").read_text())["environment"])


def receive(
    client: ClientConnection, wanted: Callable[[dict[str, Any]], bool], timeout_s: float
) -> dict[str, Any]:
    """The first message ``wanted`` accepts within ``timeout_s`` (others are skipped)."""
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = json.loads(client.recv(timeout=left))
        except TimeoutError:
            break
        if wanted(message):
            return message
        seen.append(message["type"])
    raise AssertionError(f"no such message within {timeout_s} s; saw {seen}")


def subscribe(client: ClientConnection, *pairs: str) -> dict[str, Any]:
    client.send(json.dumps({"action": "subscribe", "pairs": list(pairs)}))
    return receive(client, lambda m: m["type"] == "snapshot", 10)


def test_a_subscription_gets_a_snapshot_with_the_prices_routes_own_entries(stream: Stack) -> None:
    with connect(ws_url(stream)) as client:
        snapshot = subscribe(client, "btc/usdt", "ETH/USDT", "FOO/USDT")
    served = stream.get("/api/market-data/prices", params={"pairs": PAIRS}).json()

    assert set(snapshot["prices"]) == {"BTC/USDT", "ETH/USDT"} and snapshot["missing"] == ["FOO/USDT"]
    for pair, entry in snapshot["prices"].items():
        assert set(entry) == set(served[pair])  # exactly the prices API's fields, stale and source included
        assert entry["source"] == "cache" and entry["stale"] is False
    assert snapshot["status"] in ("ok", "degraded") and "reason" in snapshot


def test_updates_follow_ticks_with_only_the_subscribed_pairs_once_a_slot(stream: Stack) -> None:
    with connect(ws_url(stream)) as client:
        subscribe(client, "BTC/USDT")
        updates = [receive(client, lambda m: m["type"] == "update", 12) for _ in range(3)]

    for update in updates:
        assert set(update["prices"]) == {"BTC/USDT"}  # never ETH/USDT, which another client may want
        assert update["prices"]["BTC/USDT"]["source"] == "cache"
    slots = [update["slot"] for update in updates]
    assert slots == sorted(set(slots))  # one update per slot at most, in slot order
    timestamps = [update["prices"]["BTC/USDT"]["timestamp"] for update in updates]
    assert timestamps == sorted(set(timestamps))  # each one a newer price: changed entries only


def test_a_bad_message_gets_an_error_naming_it_and_the_connection_stays_open(stream: Stack) -> None:
    with connect(ws_url(stream)) as client:
        for body, code, named in [
            ("{nope", "malformed_json", "{nope"),
            ('{"action": "subscrib", "pairs": ["BTC/USDT"]}', "unknown_action", "subscrib"),
            ('{"action": "subscribe", "pairs": ["BTC-USDT"]}', "invalid_pairs", "BTC-USDT"),
            (
                json.dumps({"action": "subscribe", "pairs": [f"C{i}/USDT" for i in range(101)]}),
                "too_many_pairs",
                "101",
            ),
        ]:
            client.send(body)
            error = receive(client, lambda m: m["type"] == "error", 10)
            assert error["error"] == code and named in error["message"], error
        client.send('{"action": "ping"}')
        assert receive(client, lambda m: m["type"] == "heartbeat", 10)["at"] > 0


def test_a_quiet_connection_hears_a_heartbeat_within_30_s(stream: Stack) -> None:
    with connect(ws_url(stream)) as client:
        started = time.monotonic()
        heartbeat = receive(client, lambda m: m["type"] == "heartbeat", HEARTBEAT_WITHIN_S + 5)
    assert time.monotonic() - started <= HEARTBEAT_WITHIN_S + 1
    assert abs(heartbeat["at"] / 1000 - time.time()) < 10


def _registered(stack: Stack) -> set[str]:
    env = environment(stack)
    table = boto3.resource(
        "dynamodb", endpoint_url=env["DYNAMODB_ENDPOINT_URL"], region_name="eu-west-1",
        aws_access_key_id="local", aws_secret_access_key="local",
    ).Table(env["MARKET_DATA_TABLE_NAME"])  # fmt: skip
    items = table.query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": "CONN"}).get(
        "Items", []
    )
    return {str(item["sk"]) for item in items}


def test_a_client_that_vanishes_without_closing_is_forgotten_after_its_posts_get_410(stream: Stack) -> None:
    before = _registered(stream)
    client = connect(ws_url(stream))
    subscribe(client, "BTC/USDT")
    (mine,) = wait_for(lambda: _registered(stream) - before, 10, "the connection's registration")
    # Gone without a close frame: the socket reset under the client, as a phone losing its network.
    sock = client.socket
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()

    wait_for(lambda: mine not in _registered(stream), 20, "the vanished connection's removal")
    management = boto3.client(
        "apigatewaymanagementapi", endpoint_url=stream.base, region_name="eu-west-1",
        aws_access_key_id="local", aws_secret_access_key="local",
    )  # fmt: skip
    with pytest.raises(management.exceptions.GoneException):
        management.post_to_connection(ConnectionId=mine, Data=b"{}")


def _fault(stack: Stack, body: dict[str, Any] | None) -> None:
    url = stack.simulator + "/_simulator/faults"
    response = httpx.post(url, json=body, timeout=5) if body else httpx.delete(url, timeout=5)
    response.raise_for_status()


def test_status_messages_through_an_exchange_outage_and_its_recovery(stream: Stack) -> None:
    with connect(ws_url(stream)) as client:
        subscribe(client, "BTC/USDT")
        _fault(stream, {"fault": "server_error"})
        try:
            # The failing tick leaves the pairs unrefreshed; the next one serves them from Coinbase.
            failing = receive(client, lambda m: m["type"] == "status", 20)
            assert failing["status"] == "degraded" and "BTC/USDT" in failing["reason"], failing
            degraded = receive(client, lambda m: m["type"] == "status" and "coinbase" in m["reason"], 20)
            assert degraded["status"] == "degraded" and "failed over" in degraded["reason"], degraded
            moved = receive(client, lambda m: m["type"] == "update", 12)
            assert moved["prices"]["BTC/USDT"]["exchange"] == "coinbase"
        finally:
            _fault(stream, None)
        # Back on Binance once the pair's hold off it ends (30 s), and told so.
        recovered = receive(client, lambda m: m["type"] == "status" and m["status"] == "ok", 60)
    assert recovered["reason"] == ""


def test_status_messages_through_a_lost_cache_and_its_return(stream: Stack) -> None:
    cache = redis.Redis.from_url(environment(stream)["REDIS_URL"])
    with closing(cache), connect(ws_url(stream)) as client:
        subscribe(client, "BTC/USDT")
        receive(client, lambda m: m["type"] == "update", 12)
        # Every other client of the cache blocks for 12 s: the fetcher's writes time out (1 s).
        cache.execute_command("CLIENT", "PAUSE", "12000", "ALL")
        lost = receive(client, lambda m: m["type"] == "status" and "cache" in m["reason"], 20)
        assert lost["status"] == "degraded"
        back = receive(client, lambda m: m["type"] == "status" and m["status"] == "ok", 30)
    assert back["reason"] == ""


def test_stopping_the_stack_closes_every_connection_as_going_away(tmp_path: Path) -> None:
    stack = start_stack(tmp_path)
    try:
        wait_for(lambda: any("serving on" in line for line in stack.output), 20, "the serving banner")
        client = connect(ws_url(stack))
        subscribe(client, "BTC/USDT")
    finally:
        stop_stack(stack)
    deadline = time.monotonic() + 10
    with pytest.raises(ConnectionClosed) as closed:
        while time.monotonic() < deadline:  # messages sent before the stop are read first
            client.recv(timeout=max(0.1, deadline - time.monotonic()))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
