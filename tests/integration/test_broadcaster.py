"""The broadcaster against real parts: the local gateway's WebSocket endpoint and management API,
real clients, a real redis-server and moto: splits, and parallel broadcasters of one slot."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from fetcher.deps import Fetcher
from fetcher.loop import LoopSummary, run_slot
from local_stack.binance_simulator import BinanceSimulator
from local_stack.lambda_context import LocalLambdaContext
from market_data.clock import now_ms
from market_data.config import get_settings
from tests.websocket_stack import local_websocket_stack

INTERVAL_MS = 2000


def drain(client: ClientConnection, wait_s: float) -> list[dict[str, Any]]:
    """Every message the client receives within ``wait_s``."""
    received: list[dict[str, Any]] = []
    deadline = threading.Event()
    timer = threading.Timer(wait_s, deadline.set)
    timer.start()
    try:
        while not deadline.is_set():
            try:
                received.append(json.loads(client.recv(timeout=0.2)))
            except TimeoutError:
                continue
    finally:
        timer.cancel()
    return received


def drain_all(clients: list[ClientConnection], wait_s: float) -> list[list[dict[str, Any]]]:
    """``drain`` for every client at once."""
    with ThreadPoolExecutor(len(clients)) as pool:
        return list(pool.map(lambda client: drain(client, wait_s), clients))


@pytest.fixture
def subscribed(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., list[ClientConnection]]]:
    """``n`` real clients subscribed to BTC/USDT, with prices in the cache (no broadcaster started
    by the fetcher: the tests call it themselves)."""
    container = make_container()
    ticked = now_ms() // INTERVAL_MS
    run_slot(container, ticked, "broadcaster-test", LoopSummary())
    with ExitStack() as stack:
        base = stack.enter_context(local_websocket_stack(monkeypatch))

        def clients(n: int, subscription: dict[str, Any] | None = None) -> list[ClientConnection]:
            opened = []
            for _ in range(n):
                client = stack.enter_context(connect(base.replace("http", "ws", 1) + "/ws", open_timeout=5))
                client.send(json.dumps(subscription or {"action": "subscribe", "pairs": ["BTC/USDT"]}))
                opened.append(client)
            for received in drain_all(opened, 1):  # each has its snapshot before a test counts what follows
                assert [m["type"] for m in received][:1] == ["snapshot"]
            return opened

        clients.ticked_slot = ticked  # type: ignore[attr-defined]  # the slot whose prices are cached
        yield clients
    container.close()


def notice(status: str = "ok", reason: str = "", *, slot: int | None = None) -> dict[str, Any]:
    slot = now_ms() // INTERVAL_MS if slot is None else slot
    return {
        "slot": slot,
        "slotMs": slot * INTERVAL_MS,
        "pairs": ["BTC/USDT"],
        "status": status,
        "reason": reason,
    }


@pytest.mark.parametrize(
    ("payload_cap", "registry_reads"),
    [(200_000, 1), (100, 3)],
    ids=["splits-handed-their-connections", "too-many-to-hand-over-splits-read-the-registry"],
)
def test_past_its_capacity_a_fan_out_splits_and_every_connection_gets_one_update(
    subscribed: Callable[[int], list[ClientConnection]],
    monkeypatch: pytest.MonkeyPatch,
    payload_cap: int,
    registry_reads: int,
) -> None:
    import broadcaster.handler as broadcaster
    from market_data import store

    clients = subscribed(25)
    monkeypatch.setenv("BROADCAST_CONNECTIONS_PER_INVOCATION", "10")
    monkeypatch.setattr(broadcaster, "MAX_SPLIT_PAYLOAD_BYTES", payload_cap)
    get_settings.cache_clear()
    reads: list[int] = []
    read_registry = store.list_connections

    def counted(*args: Any, **kwargs: Any) -> list[store.Connection]:
        reads.append(1)
        return read_registry(*args, **kwargs)

    monkeypatch.setattr(store, "list_connections", counted)

    answer = broadcaster.lambda_handler(notice(), LocalLambdaContext("BroadcasterFunction", 30))

    assert (answer["shards"], answer["shard"]) == (3, 0)  # this one posts a third; two more started
    updates = [[m for m in received if m["type"] == "update"] for received in drain_all(clients, 3)]
    assert [len(each) for each in updates] == [1] * 25  # every connection once, none twice
    assert {each[0]["prices"]["BTC/USDT"]["pair"] for each in updates} == {"BTC/USDT"}
    assert len(reads) == registry_reads  # one Query a slot when the splits are handed their share


def test_parallel_broadcasters_of_one_slot_tell_a_status_change_once(
    subscribed: Callable[[int], list[ClientConnection]],
) -> None:
    import broadcaster.handler as broadcaster

    clients = subscribed(3)
    slot_notice = notice("degraded", "fetcher paused: binance: rate limited")
    threads = [
        threading.Thread(
            target=broadcaster.lambda_handler,
            args=(slot_notice, LocalLambdaContext("BroadcasterFunction", 30)),
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    for received in drain_all(clients, 1.5):
        statuses = [m for m in received if m["type"] == "status"]
        assert len(statuses) == 1 and statuses[0]["reason"] == "fetcher paused: binance: rate limited"
        assert len([m for m in received if m["type"] == "update"]) == 1  # the changed price, once


def test_candle_subscribers_get_each_closed_minute_once_and_the_others_none(
    subscribed: Callable[..., list[ClientConnection]],
) -> None:
    import broadcaster.handler as broadcaster
    from prices_api.handler import lambda_handler as prices_api
    from tests.support import load_event

    plain = subscribed(2)
    candles = subscribed(2, {"action": "subscribe", "pairs": ["BTC/USDT", "ETH/USDT"], "candles": "1m"})
    # The minute the fixture's tick sampled (not now's: a minute may have ended since).
    minute = subscribed.ticked_slot * INTERVAL_MS // 60_000 * 60_000  # type: ignore[attr-defined]
    next_minute = (minute + 60_000) // INTERVAL_MS
    # The next minute's first two slots: the first pushes the minute just over, the second nothing.
    for slot in (next_minute, next_minute + 1):
        broadcaster.lambda_handler(notice(slot=slot), LocalLambdaContext("BroadcasterFunction", 30))

    for received in drain_all(plain, 1.5):
        assert [m for m in received if m["type"] == "candle"] == []
    event = load_event("history_get.json")
    event["queryStringParameters"] = {"pair": "BTC/USDT", "from": str(minute), "to": str(minute)}
    history = json.loads(prices_api(event, LocalLambdaContext("prices", 6))["body"])
    for received in drain_all(candles, 1.5):
        pushed = {m["pair"]: m["candle"] for m in received if m["type"] == "candle"}
        assert sorted(pushed) == ["BTC/USDT", "ETH/USDT"]
        assert len([m for m in received if m["type"] == "candle"]) == 2  # once each
        assert pushed["BTC/USDT"] == history["candles"][0]  # the same candle history serves
        assert pushed["BTC/USDT"]["time"] == minute
