"""Every cache key shares one hash tag, so pipelines stay in one slot on a Redis Cluster."""

from __future__ import annotations

from redis.cluster import key_slot

from market_data import cache
from market_data.cache import keys as cache_keys


def test_all_keys_hash_to_one_cluster_slot() -> None:
    keys = [
        cache.STALE_COPIES, cache.STATS, cache.HEARTBEAT, cache.HELD_PRICES, cache.LKG_WRITTEN,
        cache.FAILURE_HOLDS, cache.PACE, cache.ban_key("binance_us"), cache.circuit_key("kraken"),
        cache.kept_key("coinbase"), cache.claim_key(448_857_712), cache.reads_key(28_000_000),
        cache.read_latency_key(28_000_000), cache_keys.SHARED_HEALTH, cache_keys.WRITTEN_SLOT,
    ]  # fmt: skip
    assert len({key_slot(key.encode()) for key in keys}) == 1
    assert all(key.startswith(cache.TAG) for key in keys)
