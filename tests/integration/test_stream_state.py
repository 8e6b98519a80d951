"""The stream's shared state, with two containers and parallel callers over one cache and one
table: what was pushed, the status every connection was told, the heartbeat rounds, the registry."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from market_data import cache, store
from market_data.clock import now_ms
from market_data.config import load_settings
from market_data.store.connections import CONNECTION_LIFETIME_MS


def test_only_changed_entries_count_and_two_containers_share_what_was_pushed(
    service_env: dict[str, str],
) -> None:
    first = redis.Redis.from_url(service_env["REDIS_URL"])
    second = redis.Redis.from_url(service_env["REDIS_URL"])  # another broadcaster container
    first.delete(cache.keys.STREAM_SENT)

    assert cache.changed_since_pushed(
        first, {"BTC/USDT": "1|100|False|cache", "ETH/USDT": "1|5|False|cache"}
    ) == [
        "BTC/USDT",
        "ETH/USDT",
    ]
    assert cache.changed_since_pushed(
        second, {"BTC/USDT": "1|100|False|cache", "ETH/USDT": "2|5|False|cache"}
    ) == ["ETH/USDT"]
    assert cache.changed_since_pushed(first, {"BTC/USDT": "1|100|True|cache"}) == ["BTC/USDT"]  # went stale
    assert cache.changed_since_pushed(first, {}) == []
    # Lost with the cache: everything counts as changed once, never a missed update.
    first.delete(cache.keys.STREAM_SENT)
    assert cache.changed_since_pushed(second, {"BTC/USDT": "1|100|True|cache"}) == ["BTC/USDT"]


def test_parallel_broadcasters_tell_a_status_change_and_a_heartbeat_round_once(
    service_env: dict[str, str],
) -> None:
    table = store.get_table(load_settings())
    told = store.get_stream_state(table)

    with ThreadPoolExecutor(8) as pool:
        claims = list(
            pool.map(
                lambda _: store.claim_status(table, "degraded", "binance failed over", told=told), range(8)
            )
        )
        heartbeats = list(pool.map(lambda _: store.claim_heartbeat(table, 100, every_slots=6), range(8)))

    assert claims.count(True) == 1 and heartbeats.count(True) == 1
    assert store.get_stream_state(table) == store.StreamState("degraded", "binance failed over", 100)
    assert not store.claim_heartbeat(table, 105, every_slots=6)  # too soon after slot 100
    assert store.claim_heartbeat(table, 106, every_slots=6)
    # The recovery is a change of its own, told once as well.
    told = store.get_stream_state(table)
    assert store.claim_status(table, "ok", "", told=told) and not store.claim_status(
        table, "ok", "", told=told
    )


def test_the_registry_keeps_subscriptions_and_forgets_gone_and_expired_connections(
    service_env: dict[str, str],
) -> None:
    table = store.get_table(load_settings())
    now = now_ms()
    store.register_connection(table, "A=", connected_at=now)
    store.register_connection(table, "B=", connected_at=now)
    store.register_connection(
        table, "OLD=", connected_at=now - CONNECTION_LIFETIME_MS - 1
    )  # API Gateway dropped it

    assert store.subscribe(table, "A=", ["BTC/USDT", "ETH/USDT"], max_pairs=100) == ("BTC/USDT", "ETH/USDT")
    assert store.subscribe(table, "NEVER=", ["BTC/USDT"], max_pairs=100) is None  # not resurrected
    listed = {c.connection_id: c.pairs for c in store.list_connections(table, now_ms=now)}
    assert listed == {"A=": ("BTC/USDT", "ETH/USDT"), "B=": ()}

    store.forget_connections(table, ["B=", "B="])
    assert [c.connection_id for c in store.list_connections(table, now_ms=now)] == ["A="]

    # Candles for some of its pairs; unsubscribing a pair stops its candles too.
    store.subscribe(table, "A=", ["ETH/USDT", "SOL/USDT"], max_pairs=100, candles=True)
    store.subscribe(table, "A=", ["BTC/USDT"], max_pairs=100, candles=True)  # held already: candles added
    [a] = store.list_connections(table, now_ms=now)
    assert a.pairs == ("BTC/USDT", "ETH/USDT", "SOL/USDT")
    assert a.candle_pairs == ("BTC/USDT", "ETH/USDT", "SOL/USDT")
    store.unsubscribe(table, "A=", ["ETH/USDT"])
    [a] = store.list_connections(table, now_ms=now)
    assert (a.pairs, a.candle_pairs) == (("BTC/USDT", "SOL/USDT"), ("BTC/USDT", "SOL/USDT"))


def test_parallel_subscriptions_on_one_connection_all_count_and_the_cap_holds(
    service_env: dict[str, str],
) -> None:
    table = store.get_table(load_settings())
    store.register_connection(table, "P=", connected_at=now_ms())
    pairs = [f"C{i}/USDT" for i in range(12)]

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(lambda pair: store.subscribe(table, "P=", [pair], max_pairs=100), pairs))

    assert set(store.get_connection(table, "P=").pairs) == set(pairs)  # none lost to a race
    assert store.subscribe(table, "P=", pairs[:3], max_pairs=12) == tuple(sorted(pairs))  # nothing new: fine
    with pytest.raises(store.SubscriptionCapError):
        store.subscribe(table, "P=", ["NEW/USDT"], max_pairs=12)
    assert store.unsubscribe(table, "P=", pairs[:10])
    assert set(store.get_connection(table, "P=").pairs) == set(pairs[10:])
