"""Reading prices as every client-facing function serves them: the cache's newest tickers, then
DynamoDB's last known good; never an exchange. The prices route, the WebSocket snapshot and the
broadcaster's updates all answer with these entries, so they carry exactly the same fields.

Returns what is served and what is missing; each caller decides its own answer.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace

import orjson

from market_data import cache
from market_data.config import Settings
from market_data.contracts import ReadCounts
from market_data.observability import RequestMetrics, logger
from market_data.pairs import parse_pairs_param
from market_data.statuses import PENDING, REJECTED, REVOKED, SERVED, SUSPENDED

# Why a pair is not listed, as far as the source read can tell. The cache holds the listed pairs
# alone, so from it every other pair is "not listed"; the registry (read when the cache is lost)
# tells the status apart.
NOT_LISTED = "not listed"
NEVER_SUBMITTED = "never submitted"
NOT_LISTED_BY_STATUS: dict[str, str] = {
    PENDING: "pending verification",
    REJECTED: "rejected",
    REVOKED: "revoked",
}


@dataclass(frozen=True)
class PricesAnswer:
    """The entries served, in the order asked, and the pairs asked for that have none."""

    entries: dict[str, dict[str, object]]
    missing: list[str]
    # The listed set was read (a warm cache, or a seeded registry). Without it no pair can be
    # called unlisted: a cold start must not tell a client to give up on a pair about to come.
    listing_known: bool
    # Of ``missing``, the pairs that are not listed, with the reason: no price will come for them
    # until they are (submitted, verified, approved again), so retrying is pointless.
    not_listed: dict[str, str] = field(default_factory=dict)
    # A validator of the answer read from the cache (None from last known good): it changes
    # whenever the body would, and matched ``If-None-Match`` the entries were not even decoded.
    etag: str | None = None
    not_modified: bool = False
    # The slot of the tick that wrote what the cache answered (None from last known good): the
    # answer stands until the next slot's tick may replace it.
    written_slot: int | None = None


def get_prices(
    raw_pairs: str | None,
    *,
    settings: Settings,
    now: int,
    metrics: RequestMetrics | None = None,
    if_none_match: str | None = None,
    variant: str = "",
) -> PricesAnswer:
    """Read the requested pairs; raises ``InvalidPairError`` for a bad ``pairs`` value.

    ``stale`` follows the entry's age against MARKET_DATA_CACHE_STALE_TTL_MS. An entry older than
    MARKET_DATA_CACHE_TTL_MS has outlived the cache's lifetime for a price (the fetcher has not
    refreshed it for that long): it is served as ``last_known_good``, like DynamoDB's copy.
    ``metrics`` counts the pairs served fresh, stale, from last known good and missing.
    """
    pairs = parse_pairs_param(raw_pairs)
    return read_prices(
        pairs, settings=settings, now=now, metrics=metrics, if_none_match=if_none_match, variant=variant
    )


def read_prices(
    pairs: Sequence[str] | None,
    *,
    settings: Settings,
    now: int,
    metrics: RequestMetrics | None = None,
    if_none_match: str | None = None,
    variant: str = "",
) -> PricesAnswer:
    """``get_prices`` for pairs already parsed (None: every listed pair). ``variant`` names what
    else the body holds (sparklines), so that its validator differs."""
    try:
        found = cache.read_prices(cache.get_read_client(settings), pairs)
    except cache.CacheUnavailableError as exc:
        logger.warning("cache unreachable; serving last known good", error=exc.cause)
        return _from_last_known_good(pairs, settings=settings, now=now, metrics=metrics)
    if not found.populated:
        # Reachable but empty (flushed, failed over, or never filled): what DynamoDB kept is
        # better than nothing until the next tick refills the cache.
        return _from_last_known_good(pairs, settings=settings, now=now, metrics=metrics)
    stale_after, expired_after = settings.market_data_cache_stale_ttl_ms, settings.market_data_cache_ttl_ms
    wanted = pairs if pairs is not None else sorted(found.listed)
    etag = validator(
        found, wanted, now=now, stale_after=stale_after, expired_after=expired_after, variant=variant
    )
    if if_none_match is not None and (etag in if_none_match or if_none_match.strip() == "*"):
        return PricesAnswer(
            {}, [], listing_known=True, etag=etag, not_modified=True, written_slot=found.slot
        )  # fmt: skip
    entries: dict[str, dict[str, object]] = {}
    for pair, raw in found.tickers.items():
        entry = orjson.loads(raw)
        age = now - entry["timestamp"]
        if pair in found.suspended or age > expired_after:  # never a fresh-looking price
            entry["stale"], entry["source"] = True, "last_known_good"
        else:
            entry["stale"], entry["source"] = age > stale_after, "cache"
        entries[pair] = entry
    answer = _answer(wanted, entries, metrics, listed=found.listed)
    return replace(answer, etag=etag, written_slot=found.slot)


_TIMESTAMP = b'"timestamp":'


def validator(
    found: cache.CachedPrices,
    wanted: Sequence[str],
    *,
    now: int,
    stale_after: int,
    expired_after: int,
    variant: str = "",
) -> str:
    """A weak ETag of the answer from what the cache returned, without decoding it: the pairs
    asked for, each one's stored bytes and the freshness its age gives now (so a price turning
    stale changes it too). A new tick, a pair appearing or going, a flag flipping: a new tag."""
    digest = zlib.crc32(f"{variant}|{','.join(wanted)}".encode())
    flags = bytearray()
    for pair in wanted:
        raw = found.tickers.get(pair)
        if raw is None:
            flags += b"m"
            continue
        digest = zlib.crc32(raw, digest)
        start = raw.find(_TIMESTAMP) + len(_TIMESTAMP)
        age = now - int(raw[start : raw.find(b",", start)])
        flags += (
            b"s" if pair in found.suspended or age > expired_after else b"t" if age > stale_after else b"f"
        )
    return f'W/"{zlib.crc32(bytes(flags), digest):08x}"'


SPARKLINE = "sparkline"  # the prices route's include value


def add_sparklines(entries: dict[str, dict[str, object]], *, settings: Settings, now: int) -> None:
    """Each entry gains ``sparkline``: 96 closes of 15 minutes from its candles, the interval now
    open closing at the entry's own price. None for every entry when the cache cannot say."""
    from market_data.candles import sparkline

    if not entries:  # a 503 or 304: nothing to add to (HMGET takes at least one field)
        return
    try:
        stored = cache.read_sparklines(cache.get_client(settings), list(entries))
    except cache.CacheUnavailableError as exc:
        logger.warning("sparklines unavailable", error=exc.cause)
        for entry in entries.values():
            entry[SPARKLINE] = None
        return
    for pair, entry in entries.items():
        first, closes = stored.get(pair, (0, []))
        entry[SPARKLINE] = sparkline(first, closes, now, float(entry["price"]))  # type: ignore[arg-type]


def _from_last_known_good(
    pairs: Sequence[str] | None, *, settings: Settings, now: int, metrics: RequestMetrics | None
) -> PricesAnswer:
    """The cache is lost: serve DynamoDB's last known good, flagged stale by age."""
    from market_data import store

    try:
        table = store.get_table(settings)
        # Served pairs: active ones, and suspended ones from their last copy (stale by age).
        registry = {record.pair: record.status for record in store.list_registry(table)}
        listed = {pair for pair, status in registry.items() if status in SERVED}
        tickers = store.read_last_known_good(table, pairs)
    except store.StoreUnavailableError as exc:
        logger.error("last known good unreachable too", error=exc.cause)
        registry, listed, tickers = {}, set(), {}
    stale_after = settings.market_data_cache_stale_ttl_ms
    entries: dict[str, dict[str, object]] = {}
    for pair, ticker in tickers.items():
        if pair in listed:
            entry: dict[str, object] = ticker.model_dump()
            entry["stale"] = registry[pair] == SUSPENDED or now - ticker.timestamp > stale_after
            entry["source"] = "last_known_good"
            entries[pair] = entry
    wanted = pairs if pairs is not None else sorted(listed)
    if not registry:
        # Unreadable, or not seeded yet (the fetcher seeds it on its first tick): which pairs
        # will be listed is unknown.
        return _answer(wanted, entries, metrics, listed=None)
    reasons = {pair: NOT_LISTED_BY_STATUS[state] for pair, state in registry.items() if state not in SERVED}
    return _answer(wanted, entries, metrics, listed=listed, reasons=reasons, otherwise=NEVER_SUBMITTED)


def _answer(
    wanted: Sequence[str],
    entries: dict[str, dict[str, object]],
    metrics: RequestMetrics | None,
    *,
    listed: Set[str] | None,
    reasons: Mapping[str, str] | None = None,
    otherwise: str = NOT_LISTED,
) -> PricesAnswer:
    """``listed``: the listed pairs, None when unknown. An unlisted pair's reason is its entry in
    ``reasons`` where the source knows one, else ``otherwise``."""
    body = {pair: entries[pair] for pair in wanted if pair in entries}
    missing = [pair for pair in wanted if pair not in entries]
    if metrics is not None:
        count_served(metrics, body.values(), missing=len(missing))
    if listed is None:
        return PricesAnswer(body, missing, listing_known=False)
    known = reasons or {}
    not_listed = {pair: known.get(pair, otherwise) for pair in missing if pair not in listed}
    return PricesAnswer(body, missing, listing_known=True, not_listed=not_listed)


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
    metrics.add_counts(ReadCounts(fresh, stale, last_known_good, missing).served())
