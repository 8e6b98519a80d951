"""All DynamoDB access: one table, its item families in one module each.

- ``connection``: the process-wide table, and ``StoreUnavailableError``, the one error callers see;
- ``registry``: the pairs, whitelist submissions and their caps, status changes;
- ``last_known_good``: the durable copy of each pair's last good ticker;
- ``coordination``: the fetcher's claims, bans and heartbeat while the cache is lost;
- ``connections``: the WebSocket connections, their subscriptions and the stream's shared state;
- ``candles``: the hourly candles history falls back on.
"""

from market_data.store.candles import read_hourly_candles, write_hourly_candles, write_hourly_history
from market_data.store.connection import StoreUnavailableError, get_table, reset_table
from market_data.store.connections import (
    Connection,
    StreamState,
    SubscriptionCapError,
    claim_heartbeat,
    claim_status,
    forget_connections,
    get_connection,
    get_stream_state,
    list_connections,
    register_connection,
    subscribe,
    unsubscribe,
)
from market_data.store.coordination import claim_slot, get_bans, get_heartbeat, put_ban, put_heartbeat
from market_data.store.last_known_good import read_last_known_good, write_last_known_good
from market_data.store.registry import (
    change_status,
    create_submission,
    get_record,
    list_registry,
    list_registry_page,
    seed_registry,
)

__all__ = [
    "Connection",
    "StoreUnavailableError",
    "StreamState",
    "SubscriptionCapError",
    "change_status",
    "claim_heartbeat",
    "claim_slot",
    "claim_status",
    "create_submission",
    "forget_connections",
    "get_bans",
    "get_connection",
    "get_heartbeat",
    "get_record",
    "get_stream_state",
    "get_table",
    "list_connections",
    "list_registry",
    "list_registry_page",
    "put_ban",
    "put_heartbeat",
    "read_hourly_candles",
    "read_last_known_good",
    "register_connection",
    "reset_table",
    "seed_registry",
    "subscribe",
    "unsubscribe",
    "write_hourly_candles",
    "write_hourly_history",
    "write_last_known_good",
]
