"""Every cache key shares one hash tag, so pipelines stay in one slot on a Redis Cluster."""

from __future__ import annotations

from redis.cluster import key_slot

from market_data import cache


def test_all_keys_hash_to_one_cluster_slot() -> None:
    keys = [
        cache.LISTED_PAIRS, cache.SUSPENDED_PAIRS, cache.STALE_COPIES, cache.STATS, cache.HEARTBEAT,
        cache.ban_key("binance_us"), cache.circuit_key("kraken"), cache.HELD_PRICES, cache.LKG_WRITTEN,
        cache.fresh_key("BTC/USDT"), cache.fresh_key("SYM0400/USDT"), cache.claim_key(448_857_712),
    ]  # fmt: skip
    assert len({key_slot(key.encode()) for key in keys}) == 1
    assert all(key.startswith(cache.TAG) for key in keys)
