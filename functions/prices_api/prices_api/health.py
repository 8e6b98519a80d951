"""GET /api/market-data/health (and /init): the fetcher's heartbeat and stats, read from the cache."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import orjson

from market_data import cache
from market_data.config import Settings
from market_data.http import ApiResponse, json_response
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


def get_health(*, settings: Settings, now: int) -> ApiResponse:
    health = compute_health(settings=settings, now=now)
    return json_response(
        503 if health.status == "down" else 200,
        health.model_dump(),
        {"Cache-Control": "no-store"},
    )


def compute_health(*, settings: Settings, now: int) -> HealthBody:
    interval = settings.fetch_interval_ms
    try:
        record = cache.read_fetcher_record(
            cache.get_client(settings), now_ms=now, exchanges=settings.exchanges
        )
    except cache.CACHE_ERRORS as exc:
        logger.warning("cache unreachable for health", error=type(exc).__name__)
        return _health_without_cache(exc, settings=settings, now=now)

    raw = record.stats
    stats = FetcherStats(
        lastFetchTime=_int(raw.get("lastFetchTime")),
        lastFetchDurationMs=_int(raw.get("lastFetchDurationMs")),
        fetchAttempts=_int(raw.get("fetchAttempts")) or 0,
        fetchSuccesses=_int(raw.get("fetchSuccesses")) or 0,
        fetchErrors=_int(raw.get("fetchErrors")) or 0,
        lastError=raw.get("lastError"),
    )
    heartbeat = record.heartbeat or {}
    last_heartbeat = _int(heartbeat.get("at"))
    is_running = last_heartbeat is not None and now - last_heartbeat <= MISSED_HEARTBEATS_FOR_DOWN * interval
    exchanges = _exchanges(record, raw, settings, now)
    # Fetching is paused when no exchange may be asked: the heartbeat says so, and so do the bans.
    paused_until = _int(heartbeat.get("pausedUntil"))
    exchange_pauses = [status.pausedUntil for status in exchanges.values()]
    if exchange_pauses and all(exchange_pauses):
        paused_until = max(paused_until or 0, min(until for until in exchange_pauses if until))
    paused = paused_until is not None and paused_until > now
    pause_reason = heartbeat.get("pauseReason") if paused else None
    if paused and pause_reason is None:
        pause_reason = "; ".join(f"{name}: {status.pauseReason}" for name, status in exchanges.items())
    fetcher_health = _health(stats, is_running, now, settings)
    advice = raw.get("exchangeAdvice") or None
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
            usedWeight=_int(raw.get("usedWeight")),
            listedPairs=sorted(record.listed),
            missingPairs=orjson.loads(raw["missingPairs"]) if raw.get("missingPairs") else {},
            invalidTickers=_int(raw.get("invalidTickers")) or 0,
            circuitState=_worst_circuit(exchanges.values()),
            errorsByKind=_by_prefix(raw, "errors:"),
            invalidByKind=_by_prefix(raw, "invalid:"),
            advice=advice,
            pairsByStatus=orjson.loads(raw["pairsByStatus"]) if raw.get("pairsByStatus") else {},
            pairSources=orjson.loads(raw["pairSources"]) if raw.get("pairSources") else {},
            exchanges=exchanges,
        ),
        dataHealth=DataHealth(
            syncLatencyMs=_int(raw.get("syncLatencyMs")),
            syncGapMs=GapSummary(p50=_int(raw.get("syncGapP50Ms")), max=_int(raw.get("syncGapMaxMs"))),
            cacheWriteMs=_int(raw.get("lastCacheWriteMs")),
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


def _cache_health(counts: dict[str, int]) -> CacheHealth:
    served = PairsServed(
        fresh=counts.get("PairsServedFresh", 0),
        stale=counts.get("PairsServedStale", 0),
        lastKnownGood=counts.get("PairsServedLastKnownGood", 0),
        missing=counts.get("PairsServedMissing", 0),
    )
    requested = served.fresh + served.stale + served.lastKnownGood + served.missing
    requests = sum(counts.get(name, 0) for name in ("Responses2xx", "Responses4xx", "Responses5xx"))
    return CacheHealth(
        hitRate=round(served.fresh / requested, 4) if requested else None,
        pairsServed=served,
        requests=requests + counts.get("ResponsesUnavailable", 0),
    )


def _health_without_cache(error: Exception, *, settings: Settings, now: int) -> HealthBody:
    """The cache is lost: the fetcher keeps its heartbeat in DynamoDB meanwhile, so health still
    tells a running fetcher (degraded) from a dead one (down)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from market_data import store

    try:
        heartbeat = store.get_heartbeat(store.get_table(settings)) or {}
    except (BotoCoreError, ClientError):
        heartbeat = {}
    last = _int(heartbeat.get("at"))
    running = last is not None and now - last <= MISSED_HEARTBEATS_FOR_DOWN * settings.fetch_interval_ms
    stats = FetcherStats()
    cause = f"cache unreachable ({type(error).__name__}): prices are served from last known good"
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


def _exchanges(
    record: cache.FetcherRecord, stats: dict[str, str], settings: Settings, now: int
) -> dict[str, ExchangeStatus]:
    """Each configured exchange: its circuit and ban from their keys, its figures from the last tick."""
    figures = orjson.loads(stats["exchanges"]) if stats.get("exchanges") else {}
    statuses = {}
    for name in settings.exchanges:
        last = figures.get(name, {})
        ban = record.bans.get(name) or {}
        circuit = record.circuits.get(name, {})
        until, reason = _int(ban.get("until")), ban.get("reason")
        if not (until and until > now) and circuit.get("state") == "open":
            until = _int(circuit.get("retryAt"))
            reason = f"circuit open after {circuit.get('failures')} failed ticks"
        paused = until is not None and until > now
        statuses[name] = ExchangeStatus(
            circuitState=_circuit_state(circuit, now),
            pausedUntil=until if paused else None,
            pauseReason=str(reason) if paused else None,
            usedWeight=_int(last.get("usedWeight")),
            pairs=list(last.get("pairs", [])),
            requests=_int(last.get("requests")) or 0,
            lastError=stats.get(f"lastError:{name}"),
        )
    return statuses


CIRCUIT_SEVERITY = {"closed": 0, "half_open": 1, "open": 2}


def _worst_circuit(statuses: Iterable[ExchangeStatus]) -> Literal["closed", "open", "half_open"]:
    return max(
        (status.circuitState for status in statuses), key=CIRCUIT_SEVERITY.__getitem__, default="closed"
    )


def _circuit_state(fields: dict[str, str], now: int) -> Literal["closed", "open", "half_open"]:
    """An open circuit whose backoff has passed lets the next tick probe: it is half-open."""
    if fields.get("state") != "open":
        return "closed"
    return "half_open" if now >= (_int(fields.get("retryAt")) or 0) else "open"


def _by_prefix(stats: dict[str, str], prefix: str) -> dict[str, int]:
    return {name[len(prefix) :]: int(value) for name, value in stats.items() if name.startswith(prefix)}


def _int(value: object) -> int | None:
    if value is None:
        return None
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
