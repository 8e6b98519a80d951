"""Each function is granted exactly the AWS actions its code calls: the calls are collected through
botocore's own event hooks while each function's paths run against moto over HTTP (the cache lost
and found, submissions, admin changes, a rate limit), and compared with template.yaml's policies
in both directions."""

from __future__ import annotations

import inspect
import itertools
import json
import socket
import struct
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from websockets.sync.client import connect

from fetcher.deps import Fetcher
from fetcher.loop import LoopSummary, run_slot
from local_stack.binance_simulator import BinanceSimulator
from local_stack.lambda_context import LocalLambdaContext
from local_stack.servers import RedisServer
from local_stack.template import function_properties, load_template
from market_data import store
from tests.support import load_event
from tests.websocket_stack import local_websocket_stack

FUNCTIONS = {
    "fetcher": "FetcherFunction",
    "prices_api": "PricesApiFunction",
    "whitelist": "WhitelistFunction",
    "stream": "StreamFunction",
    "broadcaster": "BroadcasterFunction",
}
CALLED_BY_THE_FIRST_TEST = ("FetcherFunction", "PricesApiFunction", "WhitelistFunction")
# TransactWriteItems is authorised through the actions of the items it carries.
TRANSACT_ITEM_ACTIONS = {
    "Put": "PutItem", "Update": "UpdateItem", "ConditionCheck": "ConditionCheckItem", "Delete": "DeleteItem",
}  # fmt: skip
_slots = itertools.count(120_000)


@pytest.fixture
def called(service_env: dict[str, str]) -> Iterator[dict[str, set[str]]]:
    """(function -> the IAM actions its code called), from every DynamoDB call in the process."""
    calls: dict[str, set[str]] = defaultdict(set)

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        caller = next(
            (
                FUNCTIONS[name]
                for frame in inspect.stack()
                if (name := str(frame.frame.f_globals.get("__name__", "")).split(".")[0]) in FUNCTIONS
            ),
            None,
        )
        if caller is None:
            return  # a test's own setup
        if model.name == "TransactWriteItems":
            for item in params["TransactItems"]:
                calls[caller].update(f"dynamodb:{TRANSACT_ITEM_ACTIONS[kind]}" for kind in item)
        else:
            calls[caller].add(f"dynamodb:{model.name}")

    # On the session every client is made from, so that the clients made after (each container's
    # table) carry the hook too.
    events = boto3._get_default_session().events
    events.register("before-parameter-build.dynamodb.*", record, unique_id="iam-actions")
    store.reset_table()
    yield calls
    events.unregister("before-parameter-build.dynamodb.*", unique_id="iam-actions")


def granted(function: str) -> set[str]:
    """The DynamoDB actions template.yaml's own statements grant ``function``."""
    actions: set[str] = set()
    for policy in function_properties(load_template(), function).get("Policies", []):
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            actions.update(action for action in listed if action.startswith("dynamodb:"))
    return actions


def test_every_function_is_granted_exactly_the_actions_its_code_calls(
    called: dict[str, set[str]],
    make_container: Callable[..., Fetcher],
    simulator: BinanceSimulator,
    redis_server: RedisServer,
) -> None:
    def tick(container: Fetcher) -> None:
        run_slot(container, next(_slots), "iam-test", LoopSummary())

    def whitelist(name: str, **changes: Any) -> int:
        from whitelist.handler import lambda_handler

        event = {**load_event(name), **changes}
        return int(lambda_handler(event, LocalLambdaContext("WhitelistFunction", 6))["statusCode"])

    def prices(name: str) -> int:
        from prices_api.handler import lambda_handler

        return int(lambda_handler(load_event(name), LocalLambdaContext("PricesApiFunction", 6))["statusCode"])

    # The fetcher: seeding, last known good, a verification, a rate limit, the cache lost and back
    container = make_container(LAST_KNOWN_GOOD_WRITE_INTERVAL_MS="2000")
    tick(container)
    assert whitelist("whitelist_submit.json") == 202  # SOL/USDT pending: verified by the next tick
    tick(container)
    simulator.set_fault("rate_limit", path="/api/v3/ticker/24hr", count=1, retry_after=1)
    tick(container)
    redis_server.stop()
    tick(container)
    # The prices function with the cache lost: last known good, and health's heartbeat
    assert prices("prices_get.json") in (200, 206)
    assert prices("health_get.json") in (200, 503)
    redis_server.start()
    # The whitelist: list, read, admin changes
    assert whitelist("whitelist_list.json") == 200
    assert whitelist("whitelist_get.json") == 200
    assert whitelist("whitelist_revoke.json") == 200
    assert whitelist("whitelist_approve.json") == 200

    for function in CALLED_BY_THE_FIRST_TEST:
        assert called[function] == granted(function), function


def test_the_websocket_functions_are_granted_exactly_the_actions_their_code_calls(
    called: dict[str, set[str]],
    make_container: Callable[..., Fetcher],
    simulator: BinanceSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The template's WebSocket API and the broadcaster behind the local gateway, as make demo runs them
    with local_websocket_stack(monkeypatch) as base:
        container = make_container()  # a fetcher that starts the broadcaster after each slot
        run_slot(container, next(_slots), "iam-test", LoopSummary())
        url = base.replace("http://", "ws://") + "/ws"
        # Connect, subscribe (snapshot, stream state), updates, a status change, a heartbeat round
        with connect(url, open_timeout=5) as client, connect(url, open_timeout=5) as vanishing:
            for each in (client, vanishing):
                each.send(json.dumps({"action": "subscribe", "pairs": ["BTC/USDT"]}))
                assert _next_of(each, "snapshot")["prices"]
            vanishing.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            vanishing.socket.close()  # gone without a close frame: a later post gets 410
            # The first post after a reset may still land in the socket's buffer; the next finds it gone.
            for _ in range(3):
                run_slot(container, next(_slots), "iam-test", LoopSummary())
                assert _next_of(client, "update")["prices"]["BTC/USDT"]["pair"] == "BTC/USDT"
        container.close()  # waits for the last broadcaster start

    for function in ("StreamFunction", "BroadcasterFunction"):
        assert called[function] == granted(function), function


def _next_of(client: Any, kind: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        message = json.loads(client.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message["type"] == kind:
            return message  # type: ignore[no-any-return]
