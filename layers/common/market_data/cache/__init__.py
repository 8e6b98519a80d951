"""All Redis/Valkey access: the only package that knows key names and commands.

- ``keys``: every key, its writer, its readers and its lifetime;
- ``connection``: the process-wide client, and ``CacheUnavailableError``, the one error callers see;
- ``reads``: the API functions' reads (prices, read figures, health's record);
- ``ticks``: the fetcher's slot opening and tick write;
- ``stream``: what the broadcaster last pushed to WebSocket subscribers;
- ``candles``: 1-minute candles from the ticks' prices, the sparklines' closes.
"""

from market_data.cache.candles import (
    add_exchange_candles,
    add_samples,
    backfill_not_before,
    backfilled,
    claim_backfill,
    claim_hour,
    finish_backfill,
    forget_backfilled,
    read_minutes,
    read_sparklines,
    release_hour,
    reserve_backfill_request,
)
from market_data.cache.connection import CacheUnavailableError, get_client, get_read_client, reset_client
from market_data.cache.keys import (
    FAILURE_HOLDS,
    HEARTBEAT,
    HELD_PRICES,
    LKG_WRITTEN,
    PACE,
    READS_WINDOW_MS,
    STALE_COPIES,
    STATS,
    TAG,
    ban_key,
    circuit_key,
    claim_key,
    kept_key,
    read_latency_key,
    reads_key,
)
from market_data.cache.reads import (
    CachedPrices,
    FetcherRecord,
    read_fetcher_record,
    read_prices,
    read_shared_health,
    record_reads,
    share_health,
)
from market_data.cache.stream import advance_candle_minute, changed_since_pushed
from market_data.cache.ticks import (
    SharedState,
    SharedStateDiff,
    SlotStart,
    TickWrite,
    open_slot,
    read_previous,
    record_lkg_writes,
    record_write_timings,
    set_ban,
    write_heartbeat,
    write_tick,
)

__all__ = [
    "FAILURE_HOLDS",
    "HEARTBEAT",
    "HELD_PRICES",
    "LKG_WRITTEN",
    "PACE",
    "READS_WINDOW_MS",
    "STALE_COPIES",
    "STATS",
    "TAG",
    "CacheUnavailableError",
    "CachedPrices",
    "FetcherRecord",
    "SharedState",
    "SharedStateDiff",
    "SlotStart",
    "TickWrite",
    "add_exchange_candles",
    "add_samples",
    "advance_candle_minute",
    "backfill_not_before",
    "backfilled",
    "ban_key",
    "changed_since_pushed",
    "circuit_key",
    "claim_backfill",
    "claim_hour",
    "claim_key",
    "finish_backfill",
    "forget_backfilled",
    "get_client",
    "get_read_client",
    "kept_key",
    "open_slot",
    "read_fetcher_record",
    "read_latency_key",
    "read_minutes",
    "read_previous",
    "read_prices",
    "read_shared_health",
    "read_sparklines",
    "reads_key",
    "record_lkg_writes",
    "record_reads",
    "record_write_timings",
    "release_hour",
    "reserve_backfill_request",
    "reset_client",
    "set_ban",
    "share_health",
    "write_heartbeat",
    "write_tick",
]
