"""Everything that speaks to API Gateway's WebSocket management API and starts the broadcaster
through Lambda's Invoke API; callers catch ``PushUnavailableError``."""

from market_data.push.clients import (
    BroadcastStarter,
    Poster,
    PushUnavailableError,
    get_broadcast_starter,
    get_poster,
    reset_clients,
)

__all__ = [
    "BroadcastStarter",
    "Poster",
    "PushUnavailableError",
    "get_broadcast_starter",
    "get_poster",
    "reset_clients",
]
