"""Client for the market-data service: prices polled or streamed with honest stale detection,
history, and the ``market-data`` command."""

from market_data_client.api import PricesAnswer, normalise_pairs, stream_url_for
from market_data_client.async_client import AsyncPricesClient
from market_data_client.backoff import Backoff
from market_data_client.client import PricesClient
from market_data_client.errors import (
    ApiError,
    InvalidPairError,
    InvalidRequestError,
    MarketDataError,
    NotListedError,
    ResponseFormatError,
    ServerError,
    TransportError,
    UnavailableError,
)
from market_data_client.models import Candle, History, PriceEntry
from market_data_client.poller import poll, poll_async
from market_data_client.skew import ClockSkew, SkewBounds
from market_data_client.state import (
    DEFAULT_STALE_THRESHOLD_MS,
    Connection,
    PairView,
    PricesState,
    Status,
    compute_state,
)
from market_data_client.stream import StreamFollower

__all__ = [
    "DEFAULT_STALE_THRESHOLD_MS",
    "ApiError",
    "AsyncPricesClient",
    "Backoff",
    "Candle",
    "ClockSkew",
    "Connection",
    "History",
    "InvalidPairError",
    "InvalidRequestError",
    "MarketDataError",
    "NotListedError",
    "PairView",
    "PriceEntry",
    "PricesAnswer",
    "PricesClient",
    "PricesState",
    "ResponseFormatError",
    "ServerError",
    "SkewBounds",
    "Status",
    "StreamFollower",
    "TransportError",
    "UnavailableError",
    "compute_state",
    "normalise_pairs",
    "poll",
    "poll_async",
    "stream_url_for",
]
