"""The prices route's side of reading prices (market_data.prices reads them): its path, and the
request figures every read of the container adds to.
"""

from __future__ import annotations

from collections.abc import Mapping

from market_data import cache
from market_data.clock import now_ms
from market_data.config import get_settings
from market_data.observability import RequestMetrics
from market_data.prices import (
    NEVER_SUBMITTED,
    NOT_LISTED,
    NOT_LISTED_BY_STATUS,
    PricesAnswer,
    count_served,
    get_prices,
)

__all__ = [
    "BASE",
    "NEVER_SUBMITTED",
    "NOT_LISTED",
    "NOT_LISTED_BY_STATUS",
    "PRICES_PATH",
    "PricesAnswer",
    "count_served",
    "get_prices",
    "read_metrics",
    "share_read_window",
]

BASE = "/api/market-data"
PRICES_PATH = f"{BASE}/prices"


def share_read_window(counts: Mapping[str, float], latencies_ms: list[float]) -> None:
    """Each container's window of figures joins the minute's shared ones, which health reports."""
    cache.record_reads(cache.get_client(get_settings()), counts, latencies_ms, now_ms=now_ms())


# Every price read of the container is counted here, whichever path served it.
read_metrics = RequestMetrics("prices-api", "ReadLatency", on_flush=share_read_window)
