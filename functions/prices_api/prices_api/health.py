"""GET /api/market-data/health (and /init): the fetcher's heartbeat and stats, read from the cache."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterable
from typing import Literal

import orjson

from market_data import cache
from market_data.config import Settings
from market_data.contracts import CircuitState, ReadCounts
from market_data.models import (
    CacheHealth,
    DataHealth,
    ExchangeStatus,
    FetcherHealth,
    FetcherStats,
    FetcherStatus,
    GapSummary,
    HealthBody,
    LatencySummary,
    PairsServed,
)
from market_data.observability import logger

# The fetcher writes a heartbeat every slot; three missed slots mean it is not running.
MISSED_HEARTBEATS_FOR_DOWN = 3


_computing = threading.Lock()  # requests of one container wait for the one computing health


def shared_health(*, settings: Settings, now: int) -> tuple[bytes, str]:
    """Health as JSON, and its status: computed at most once per slot and shared by every
    container through the cache (the first one to compute it wins; the fetcher's writes drop it,
    so it never shows a slot older than the fetcher's last). It reads every latency sample of two
    minutes: computed per request, a few hundred requests a second would saturate the cache;
    shared, a request costs one small GET."""
    slot = now // settings.fetch_interval_ms
    with _computing:
        body = _slot_health(settings, now, slot)
    return body, str(orjson.loads(body)["status"])


def _slot_health(settings: Settings, now: int, slot: int) -> bytes:
    try:
        client = cache.get_client(settings)
        shared = cache.read_shared_health(client, slot)
        if shared is not None:
            return shared
    except cache.CacheUnavailableError:
        client = None
    body = orjson.dumps(compute_health(settings=settings, now=now).model_dump())
    if client is not None:
        with contextlib.suppress(cache.CacheUnavailableError):
            cache.share_health(client, slot, body, ttl_ms=2 * settings.fetch_interval_ms)
    return body


def compute_health(*, settings: Settings, now: int) -> HealthBody:
    """What health shows, from one cache round trip; the handler decides the HTTP status."""
    interval = settings.fetch_interval_ms
    try:
        record = cache.read_fetcher_record(
            cache.get_client(settings), now_ms=now, exchanges=settings.exchanges
        )
    except cache.CacheUnavailableError as exc:
        logger.warning("cache unreachable for health", error=exc.cause)
        return _health_without_cache(exc, settings=settings, now=now)

    raw = record.stats
    stats = FetcherStats(
        lastFetchTime=raw.last_fetch_time,
        lastFetchDurationMs=raw.duration_ms,
        fetchAttempts=raw.attempts,
        fetchSuccesses=raw.successes,
        fetchErrors=raw.errors,
        lastError=raw.last_error,
    )
    heartbeat = record.heartbeat
    last_heartbeat = heartbeat.at if heartbeat is not None and heartbeat.at else None
    is_running = last_heartbeat is not None and now - last_heartbeat <= MISSED_HEARTBEATS_FOR_DOWN * interval
    exchanges = _exchanges(record, settings, now)
    # Fetching is paused when no exchange may be asked: the heartbeat says so, and so do the bans.
    paused_until = heartbeat.paused_until if heartbeat is not None else None
    exchange_pauses = [status.pausedUntil for status in exchanges.values()]
    if exchange_pauses and all(exchange_pauses):
        paused_until = max(paused_until or 0, min(until for until in exchange_pauses if until))
    paused = paused_until is not None and paused_until > now
    pause_reason = heartbeat.pause_reason if paused and heartbeat is not None else None
    if paused and pause_reason is None:
        pause_reason = "; ".join(f"{name}: {status.pauseReason}" for name, status in exchanges.items())
    fetcher_health = _health(stats, is_running, now, settings)
    advice = raw.advice
    out = [f"{name}: {status.pauseReason}" for name, status in exchanges.items() if status.pausedUntil]

    if not is_running:
        status, reason = "down", "the fetcher has written no heartbeat for over three intervals"
    elif advice:
        status, reason = "degraded", advice
    elif paused:
        status, reason = "degraded", f"fetching paused: {pause_reason}"
    elif fetcher_health.isCacheStale:
        status, reason = "degraded", "cached prices are stale: the last fetches did not succeed"
    elif out:
        status, reason = "degraded", "exchanges not asked (their pairs fail over): " + "; ".join(out)
    else:
        status, reason = "ok", None

    timings = raw.timings
    return HealthBody(
        status=status,
        reason=reason,
        fetcher=FetcherStatus(
            isRunning=is_running,
            stats=stats,
            health=fetcher_health,
            lastHeartbeat=last_heartbeat,
            pausedUntil=paused_until if paused else None,
            pauseReason=pause_reason,
            usedWeight=raw.used_weight,
            listedPairs=sorted(record.listed),
            missingPairs=raw.missing,
            invalidTickers=raw.invalid_tickers,
            priceJumpsHeld=raw.price_jumps_held,
            circuitState=_worst_circuit(exchanges.values()),
            errorsByKind=raw.errors_by_kind,
            invalidByKind=raw.invalid_by_kind,
            advice=advice,
            listingWatch=raw.listing_watch,
            pairsByStatus=raw.pairs_by_status,
            pairSources=raw.pair_sources,
            exchanges=exchanges,
        ),
        dataHealth=DataHealth(
            syncLatencyMs=raw.sync_latency_ms,
            syncGapMs=GapSummary(p50=timings.sync_gap_p50_ms, max=timings.sync_gap_max_ms)
            if timings is not None
            else GapSummary(),
            cacheWriteMs=timings.cache_write_ms if timings is not None else None,
            readLatencyMs=_latency_summary(record.read_latencies_us),
            readWindowSeconds=(now % cache.READS_WINDOW_MS + cache.READS_WINDOW_MS) // 1000,
        ),
        cacheHealth=_cache_health(record.read_counts),
    )


def _latency_summary(samples_us: list[int]) -> LatencySummary:
    if not samples_us:
        return LatencySummary()
    ordered = sorted(samples_us)

    def rank(share: float) -> float:  # nearest-rank percentile, in ms
        return round(ordered[max(math.ceil(share * len(ordered)) - 1, 0)] / 1000, 3)

    return LatencySummary(p50=rank(0.50), p99=rank(0.99), samples=len(ordered))


def _cache_health(counts: ReadCounts) -> CacheHealth:
    served = PairsServed(
        fresh=counts.fresh, stale=counts.stale, lastKnownGood=counts.last_known_good, missing=counts.missing
    )
    requested = counts.fresh + counts.stale + counts.last_known_good + counts.missing
    return CacheHealth(
        hitRate=round(counts.fresh / requested, 4) if requested else None,
        pairsServed=served,
        requests=counts.responses,
    )


def _health_without_cache(error: cache.CacheUnavailableError, *, settings: Settings, now: int) -> HealthBody:
    """The cache is lost: the fetcher keeps its heartbeat in DynamoDB meanwhile, so health still
    tells a running fetcher (degraded) from a dead one (down)."""
    from market_data import store

    try:
        heartbeat = store.get_heartbeat(store.get_table(settings))
    except store.StoreUnavailableError:
        heartbeat = None
    last = heartbeat.at if heartbeat is not None and heartbeat.at else None
    running = last is not None and now - last <= MISSED_HEARTBEATS_FOR_DOWN * settings.fetch_interval_ms
    stats = FetcherStats()
    cause = f"cache unreachable ({error.cause}): prices are served from last known good"
    return HealthBody(
        status="degraded" if running else "down",
        reason=cause if running else f"{cause}, and the fetcher has written no heartbeat",
        fetcher=FetcherStatus(
            isRunning=running, stats=stats, health=_health(stats, running, None, settings), lastHeartbeat=last
        ),
    )


def _health(stats: FetcherStats, is_running: bool, now: int | None, settings: Settings) -> FetcherHealth:
    cache_age = now - stats.lastFetchTime if now is not None and stats.lastFetchTime else None
    return FetcherHealth(
        isRunning=is_running,
        cacheAge=cache_age,
        isCacheStale=cache_age is None or cache_age > settings.market_data_cache_stale_ttl_ms,
        fetchSuccessRate=round(stats.fetchSuccesses / stats.fetchAttempts, 4)
        if stats.fetchAttempts
        else None,
        lastErrorMessage=stats.lastError,
    )


def _exchanges(record: cache.FetcherRecord, settings: Settings, now: int) -> dict[str, ExchangeStatus]:
    """Each configured exchange: its circuit and ban from their keys, its figures from the last tick."""
    statuses = {}
    for name in settings.exchanges:
        last = record.stats.figures(name)
        ban = record.bans.get(name)
        circuit = record.circuits.get(name, CircuitState())
        until, reason = (ban.until, ban.reason) if ban is not None else (None, None)
        if not (until and until > now) and circuit.state == "open":
            until, reason = circuit.retry_at, f"circuit open: {circuit.failures} failed ticks in a row"
        paused = until is not None and until > now
        statuses[name] = ExchangeStatus(
            circuitState=circuit.display(now),
            pausedUntil=until if paused else None,
            pauseReason=str(reason) if paused else None,
            usedWeight=last.used_weight,
            pairs=last.pairs,
            requests=last.requests,
            fetchMs=last.fetch_ms,
            errors=last.errors,
            lastError=last.last_error,
        )
    return statuses


CIRCUIT_SEVERITY = {"closed": 0, "half_open": 1, "open": 2}


def _worst_circuit(statuses: Iterable[ExchangeStatus]) -> Literal["closed", "open", "half_open"]:
    return max(
        (status.circuitState for status in statuses), key=CIRCUIT_SEVERITY.__getitem__, default="closed"
    )
