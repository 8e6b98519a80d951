"""GET /api/market-data/prices: cache first, then the stale copy, then DynamoDB; never an exchange."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import orjson

from market_data import cache
from market_data.clock import now_ms
from market_data.config import Settings, get_settings
from market_data.http import ApiResponse, error_response, json_response
from market_data.observability import RequestMetrics, logger
from market_data.pairs import InvalidPairError, parse_pairs_param

BASE = "/api/market-data"
PRICES_PATH = f"{BASE}/prices"
CACHE_CONTROL = "public, max-age=1"


def share_read_window(counts: Mapping[str, float], latencies_ms: list[float]) -> None:
    """Each container's window of figures joins the minute's shared ones, which health reports."""
    cache.record_reads(cache.get_client(get_settings()), counts, latencies_ms, now_ms=now_ms())


# Every price read of the container is counted here, whichever path served it.
read_metrics = RequestMetrics("prices-api", "ReadLatency", on_flush=share_read_window)


def invalid_pairs(exc: InvalidPairError) -> ApiResponse:
    """400 naming the bad ``pairs`` value, the same from the direct path and the router."""
    return error_response(400, "invalid_pairs", str(exc))


def get_prices(
    raw_pairs: str | None, *, settings: Settings, now: int, metrics: RequestMetrics | None = None
) -> ApiResponse:
    """Answer a prices request; raises ``InvalidPairError`` (-> 400) for a bad ``pairs`` value.

    ``metrics`` counts the pairs served fresh, stale, from last known good and missing.
    """
    pairs = parse_pairs_param(raw_pairs)
    stale_after = settings.market_data_cache_stale_ttl_ms
    try:
        found = cache.read_prices(cache.get_client(settings), pairs)
    except cache.CACHE_ERRORS as exc:
        logger.warning("cache unreachable; serving last known good", error=type(exc).__name__)
        return _from_last_known_good(pairs, settings=settings, now=now, metrics=metrics)
    if not found.populated:
        # Reachable but empty (flushed, failed over, or never filled): what DynamoDB kept is
        # better than nothing until the next tick refills the cache.
        return _from_last_known_good(pairs, settings=settings, now=now, metrics=metrics)
    entries: dict[str, dict[str, object]] = {}
    for pair, raw in found.tickers.items():
        entry = orjson.loads(raw)
        if pair in found.suspended:  # the exchange stopped trading it: never a fresh-looking price
            entry["stale"], entry["source"] = True, "last_known_good"
        else:
            entry["stale"] = now - entry["timestamp"] > stale_after
            entry["source"] = "cache"
        entries[pair] = entry
    wanted = pairs if pairs is not None else sorted(found.listed)
    return build_prices_response(wanted, entries, settings=settings, metrics=metrics)


def _from_last_known_good(
    pairs: Sequence[str] | None, *, settings: Settings, now: int, metrics: RequestMetrics | None
) -> ApiResponse:
    """The cache is lost: serve DynamoDB's last known good, flagged stale by age."""
    from botocore.exceptions import BotoCoreError, ClientError

    from market_data import store

    try:
        table = store.get_table(settings)
        # Served pairs: active ones, and suspended ones from their last copy (stale by age).
        registry = {record.pair: record.status for record in store.list_registry(table)}
        listed = {pair for pair, status in registry.items() if status in store.SERVED}
        tickers = store.read_last_known_good(table, pairs)
    except (BotoCoreError, ClientError) as exc:
        logger.error("last known good unreachable too", error=type(exc).__name__)
        registry, listed, tickers = {}, set(), {}
    stale_after = settings.market_data_cache_stale_ttl_ms
    entries: dict[str, dict[str, object]] = {}
    for pair, ticker in tickers.items():
        if pair in listed:
            entry: dict[str, object] = ticker.model_dump()
            entry["stale"] = registry[pair] == "suspended" or now - ticker.timestamp > stale_after
            entry["source"] = "last_known_good"
            entries[pair] = entry
    wanted = pairs if pairs is not None else sorted(listed)
    return build_prices_response(wanted, entries, settings=settings, metrics=metrics)


def build_prices_response(
    wanted: Sequence[str],
    entries: dict[str, dict[str, object]],
    *,
    settings: Settings,
    metrics: RequestMetrics | None = None,
) -> ApiResponse:
    """200 when every wanted pair is present, 206 naming the missing ones, 503 when none is."""
    body = {pair: entries[pair] for pair in wanted if pair in entries}
    missing = [pair for pair in wanted if pair not in entries]
    if metrics is not None:
        count_served(metrics, body.values(), missing=len(missing))
    if body and not missing:
        return json_response(200, body, {"Cache-Control": CACHE_CONTROL})
    if body:
        return json_response(
            206, body, {"Cache-Control": CACHE_CONTROL, "X-Missing-Pairs": ",".join(missing)}
        )
    retry_after = str(math.ceil(settings.fetch_interval_ms / 1000))
    message = (
        "price data is not available yet; retry shortly"
        if wanted
        else "no pair is listed yet; the fetcher fills the cache within one interval"
    )
    response = error_response(503, "unavailable", message, unavailablePairs=list(missing))
    response.headers["Retry-After"] = retry_after
    response.headers["Cache-Control"] = "no-store"
    return response


def count_served(metrics: RequestMetrics, served: Iterable[dict[str, object]], *, missing: int) -> None:
    """The cache hit rate's terms: fresh from the cache, stale, from last known good, missing."""
    fresh = stale = last_known_good = 0
    for entry in served:
        if entry["source"] == "last_known_good":
            last_known_good += 1
        elif entry["stale"]:
            stale += 1
        else:
            fresh += 1
    metrics.add_counts(
        {
            "PairsServedFresh": fresh,
            "PairsServedStale": stale,
            "PairsServedLastKnownGood": last_known_good,
            "PairsServedMissing": missing,
        }
    )
