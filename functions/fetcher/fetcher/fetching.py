"""Phase: fetch. Every exchange is asked for its share of the routes at the same time; what each
answered joins its part of the tick, and what it taught us (names it refused, pairs that failed
there) is remembered for routing.
"""

from __future__ import annotations

import time

from fetcher.deps import Fetcher
from fetcher.exchanges.base import ExchangeError, FetchResult
from fetcher.routing import Route, routes_by_exchange
from market_data.clock import now_ms
from market_data.observability import logger


def fetch_routed(
    fetcher: Fetcher, routes: dict[str, Route], outcomes: dict[str, FetchResult], *, deadline: float
) -> int | None:
    """Fetch ``routes`` into ``outcomes``; returns the phase's ms (None: no request was made)."""
    deps, state = fetcher.deps, fetcher.state
    grouped = routes_by_exchange(routes.values())
    if not grouped:
        return None
    started = time.monotonic()
    futures = {
        name: deps.executor.submit(deps.exchanges[name].fetch, share, deadline=deadline)
        for name, share in grouped.items()
    }
    now = now_ms()
    for name, future in futures.items():
        try:
            fetched = future.result()
        except Exception as exc:  # one exchange's bug must not cost the others' prices
            logger.exception("exchange fetch failed", exchange=name)
            fetched = FetchResult(name)
            fetched.failed(ExchangeError("internal", f"{type(exc).__name__}: {exc}"))
            for pair in grouped[name]:
                fetched.missing[pair] = "exchange error: internal"
        outcomes[name].merge(fetched)
        listing = state.exchanges[name].listing
        listing.answered(fetched)
        for symbol in fetched.rejected:
            listing.reject(symbol, now)
        if fetched.listing_changed:
            listing.read_again()
        share = [route for route in routes.values() if route.exchange == name]
        state.holds.record(
            share, served=fetched.tickers, failed=fetched.failed_pairs(grouped[name]), now_ms=now
        )
    return round((time.monotonic() - started) * 1000)
