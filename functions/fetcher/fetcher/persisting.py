"""Phase: persist. Status changes (DynamoDB, conditional), each exchange's ban and circuit, the
tick's one cache write, and last known good (bounded writes) -- each store's failure handled
here, so a lost store costs what it must and no more.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from fetcher.circuit import after_tick
from fetcher.deps import Fetcher
from fetcher.exchanges.base import FetchResult
from fetcher.judging import Judged
from fetcher.shared_state import confirm_written
from fetcher.slot import OpenedSlot
from fetcher.verify import Transition
from market_data import cache, store
from market_data.clock import now_ms
from market_data.contracts import Ban, CircuitState, TickStats, WriteTimings, longest
from market_data.errors import PairNotFoundError, StatusConflictError
from market_data.models import Ticker
from market_data.observability import logger
from market_data.statuses import SUSPENDED


def apply_transitions(fetcher: Fetcher, transitions: list[Transition], now: int) -> list[Transition]:
    """Store each status change; one that lost a race (an admin revoke meanwhile) is dropped."""
    applied = []
    for transition in transitions:
        try:
            store.change_status(
                fetcher.deps.table,
                transition.pair,
                to=transition.to,
                reason=transition.reason,
                now_ms=now,
                allowed_from=transition.allowed_from,
                exchange=transition.exchange,
                symbol=transition.symbol,
                verified=transition.verified,
            )
        except StatusConflictError:
            continue
        except (store.StoreUnavailableError, PairNotFoundError):
            logger.exception("status change not stored; retried on a later tick", pair=transition.pair)
            fetcher.state.count_store_error()
            continue
        logger.info("pair status changed", pair=transition.pair, to=transition.to, reason=transition.reason)
        applied.append(transition)
    return applied


def settle_exchanges(
    fetcher: Fetcher,
    opened: OpenedSlot,
    outcomes: Mapping[str, FetchResult],
    weight_pauses: Mapping[str, Ban],
    now: int,
) -> dict[str, CircuitState]:
    """After the requests: each exchange's ban (a pause of our own, or the exchange's 429/418) and
    circuit. Returns the circuits to store: only those of exchanges asked this tick (one not asked
    keeps its state). The breaker counts ticks on which an exchange was asked and gave nothing
    because it failed (bans and our own pauses are handled apart): it opens after a few, and
    backs off while probes fail."""
    circuits: dict[str, CircuitState] = {}
    interval = fetcher.deps.settings.fetch_interval_ms
    for name, memory in fetcher.state.exchanges.items():
        outcome = outcomes[name]
        pause = weight_pauses.get(name)
        if pause is not None:
            remember_ban(fetcher, name, pause, now)
            logger.warning(
                "weight budget reached: pausing until the next minute", exchange=name, reason=pause.reason
            )
        if outcome.rate_limited is not None:
            retry = outcome.rate_limited
            known = longest(opened.shared.bans.get(name), memory.ban)
            until = now + retry.retry_after_s * 1000
            # A ban only ever grows: a short 429 window must not replace a longer 418 ban.
            ban = Ban(
                until=max(until, known.until if known else 0), status=retry.status or 429, reason=str(retry)
            )
            remember_ban(fetcher, name, ban, now)
            logger.warning(
                "exchange rate limit: pausing",
                exchange=name,
                status=retry.status,
                retry_after_s=retry.retry_after_s,
            )
        previous = opened.circuits[name]
        memory.circuit = previous
        if outcome.requests:
            failed = not outcome.tickers and bool(outcome.errors) and outcome.rate_limited is None
            memory.circuit = after_tick(
                previous, failed=failed, now=now, interval_ms=interval, rng=fetcher.state.rng
            )
            circuits[name] = memory.circuit
            if memory.circuit.state == "open" and previous.state != "open":
                logger.warning(
                    "exchange circuit opened",
                    exchange=name,
                    failures=memory.circuit.failures,
                    retry_at=memory.circuit.retry_at,
                    retry_in_s=round((memory.circuit.retry_at - now) / 1000, 1),
                    error=_last_error(outcome),
                )
            elif memory.circuit.state == "closed" and previous.state == "open":
                log_circuit_closed(name, previous, now)
    return circuits


def log_circuit_closed(exchange: str, was: CircuitState, now: int) -> None:
    """The recovery an operator waits for after "exchange circuit opened": which exchange, how
    long it was out, and what it cost (failed ticks, failed probes)."""
    extra: dict[str, object] = {
        "exchange": exchange,
        "failures": was.failures,
        "failed_probes": was.opens - 1,
    }
    if was.opened_at:  # a circuit stored before openedAt was recorded does not know
        extra["open_for_s"] = round((now - was.opened_at) / 1000, 1)
    logger.info("exchange circuit closed", extra=extra)


def _last_error(outcome: FetchResult) -> str | None:
    if not outcome.errors:
        return None
    error = outcome.errors[-1]
    return f"{error.kind}: {error}"[:300]


def remember_ban(fetcher: Fetcher, exchange: str, ban: Ban, now: int) -> None:
    """Keep an exchange's ban in this container, in the cache (for every invocation) and in DynamoDB
    (for when the cache is lost): whichever of them survives, no request leaves before it ends."""
    fetcher.state.exchanges[exchange].ban = ban
    try:
        cache.set_ban(fetcher.deps.redis, exchange, ban, now_ms=now)
    except cache.CacheUnavailableError:
        logger.warning("ban not stored in the cache; kept in DynamoDB and in memory", exchange=exchange)
    try:
        store.put_ban(fetcher.deps.table, exchange, ban)
    except store.StoreUnavailableError:
        logger.warning("ban not stored in DynamoDB; kept in the cache and in memory", exchange=exchange)


@dataclass(frozen=True)
class CacheWritten:
    cache_write_ms: int
    sync_gaps_ms: list[int]  # per written pair: ticker time -> visible in the cache


def write_cache(
    fetcher: Fetcher, opened: OpenedSlot, judged: Judged, stats: TickStats, shared: cache.SharedStateDiff
) -> CacheWritten | None:
    """The tick's one MULTI/EXEC, then its timings; None when the cache write failed."""
    state = fetcher.state
    try:
        started = time.monotonic()
        cache.write_tick(
            fetcher.deps.redis,
            cache.TickWrite(
                slot=opened.slot,
                tickers={pair: orjson.dumps(ticker.model_dump()) for pair, ticker in judged.tickers.items()},
                listed=judged.listed,
                suspended=[pair for pair in judged.listed if judged.status[pair] == SUSPENDED],
                unlisted_copies=opened.shared.cached_pairs - set(judged.listed),
                stats=stats,
                held=judged.held,
                shared=shared,
            ),
        )
    except cache.CacheUnavailableError as exc:
        logger.warning("cache write failed; last known good is still written", error=exc.cause)
        return None
    state.store_errors = 0  # counted in this write's stats
    confirm_written(fetcher)
    visible_at = now_ms()
    written = CacheWritten(
        round((time.monotonic() - started) * 1000),
        [visible_at - ticker.timestamp for ticker in judged.tickers.values()],
    )
    with contextlib.suppress(cache.CacheUnavailableError):  # the tick is written; only its timings are lost
        cache.record_write_timings(
            fetcher.deps.redis, WriteTimings.measured(written.cache_write_ms, written.sync_gaps_ms)
        )
    return written


def write_last_known_good(
    fetcher: Fetcher, tickers: Mapping[str, Ticker], written: Mapping[str, int], now: int
) -> int:
    """Write to DynamoDB only the pairs whose last write is older than the write interval.

    Bounded writes: at most one per pair per LAST_KNOWN_GOOD_WRITE_INTERVAL_MS, whatever the tick
    rate, so the write bill does not grow with the fetch rate. A failure is retried when next due.
    """
    interval = fetcher.deps.settings.last_known_good_write_interval_ms
    due = [ticker for pair, ticker in tickers.items() if now - written.get(pair, 0) >= interval]
    if not due:
        return 0
    try:
        count = store.write_last_known_good(fetcher.deps.table, due)
    except Exception:
        logger.exception("last known good write failed; retried when next due")
        fetcher.state.count_store_error()  # counted with the next tick's stats
        return 0
    for ticker in due:  # remembered here (for when the cache is lost) and in the cache (for all)
        fetcher.state.lkg_written[ticker.pair] = now
    with contextlib.suppress(cache.CacheUnavailableError):  # if lost, the times stay in this container
        cache.record_lkg_writes(fetcher.deps.redis, {ticker.pair: now for ticker in due})
    return count
