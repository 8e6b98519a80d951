"""What a fetcher container is made of: its collaborators (created once, with timeouts) and what it
remembers between slots (the cache holds the shared copies; this is what stands in while it is lost).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from fetcher.backfill import Backfill, candle_sources
from fetcher.broadcasting import SlotBroadcast
from fetcher.candles import CandleRecorder
from fetcher.exchanges.base import BuildContext, Exchange
from fetcher.exchanges.registry import build_exchanges
from fetcher.listings import Listing
from fetcher.routing import FailureHolds
from market_data import cache, push, store
from market_data.contracts import Ban, CircuitState
from market_data.models import PairRecord

if TYPE_CHECKING:
    from redis import Redis

    from fetcher.tick import WrittenTick
    from market_data.config import Settings

# Called after each tick's writes, with what was written (push to clients, price history, ...).
# A consumer must be quick: it runs inside the slot. One that raises is logged and the tick goes on.
TickConsumer = Callable[["WrittenTick"], None]


@dataclass
class FetcherDeps:
    """The collaborators of every tick, created once per container (see ``build_fetcher``)."""

    settings: Settings
    redis: Redis
    table: Any
    exchanges: dict[str, Exchange]  # in EXCHANGES order: the first that lists a pair serves it
    executor: ThreadPoolExecutor  # one thread per exchange: they are asked side by side
    consumers: list[TickConsumer] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)  # what close() releases
    # Called before the handler returns, with the seconds it may take (work handed to threads).
    flushers: list[Callable[[float], None]] = field(default_factory=list)


@dataclass
class ExchangeMemory:
    """One exchange as this container last saw it: its listing, and its ban and circuit (the
    cache's copies are the shared ones; these stand in while the cache is lost)."""

    listing: Listing
    ban: Ban | None = None
    circuit: CircuitState = field(default_factory=CircuitState)


@dataclass
class ContainerState:
    """What this container remembers between slots."""

    exchanges: dict[str, ExchangeMemory]
    holds: FailureHolds = field(default_factory=FailureHolds)  # pairs held off a failing exchange
    # The holds as the cache had them when read, and changes a failed cache write did not store.
    holds_stored: dict[str, str] = field(default_factory=dict)
    holds_unsaved: tuple[dict[str, str], list[str]] | None = None
    registry: list[PairRecord] | None = None  # the last registry read, used while DynamoDB fails
    lkg_written: dict[str, int] = field(default_factory=dict)  # used while the cache is lost
    held: dict[str, float] = field(default_factory=dict)  # jumped prices held last tick (cache lost)
    store_errors: int = 0  # DynamoDB failures not yet counted in the stats
    store_errors_total: int = 0  # DynamoDB failures since the container started (for metrics)
    rng: random.Random = field(default_factory=random.Random)  # backoff jitter

    def count_store_error(self) -> None:
        self.store_errors += 1
        self.store_errors_total += 1


@dataclass
class Fetcher:
    """One container's fetcher."""

    deps: FetcherDeps
    state: ContainerState

    def close(self) -> None:
        """Release the pools and kept-alive connections (a container never needs to; tests and
        benchmarks that build many do)."""
        self.deps.executor.shutdown()
        for close in self.deps.closers:
            close()


def build_fetcher(settings: Settings, *, consumers: list[TickConsumer] | None = None) -> Fetcher:
    """Clients created once per container, each with explicit timeouts."""
    http = httpx.Client(
        timeout=httpx.Timeout(
            connect=settings.exchange_connect_timeout_s,
            read=settings.exchange_read_timeout_s,
            write=settings.exchange_connect_timeout_s,
            pool=settings.exchange_connect_timeout_s,
        ),
        # Binance's batches in flight, Coinbase's requests in flight, and each exchange's listing.
        limits=httpx.Limits(max_connections=settings.market_data_max_concurrent_batches + 8),
        headers={"User-Agent": "market-data-fetcher/1"},
    )
    batches = ThreadPoolExecutor(
        max_workers=settings.market_data_max_concurrent_batches, thread_name_prefix="batch"
    )
    exchanges = build_exchanges(settings.exchanges, BuildContext(http, "", settings, batches))
    # The listings are re-read every few minutes: that is also when listed pairs are re-checked.
    refresh_ms = min(settings.exchange_info_refresh_ms, settings.whitelist_recheck_ms)
    deps = FetcherDeps(
        settings=settings,
        redis=cache.get_client(settings),
        table=store.get_table(settings),
        exchanges=exchanges,
        executor=ThreadPoolExecutor(max_workers=len(exchanges), thread_name_prefix="exchange"),
        closers=[batches.shutdown, http.close],
    )
    # First, so that a slot's candles have closed before the broadcaster reads them.
    owner = uuid.uuid4().hex
    candles = CandleRecorder(settings, deps.redis, deps.table, owner=owner)
    deps.consumers += [candles, *(consumers or [])]
    deps.flushers.append(candles.flush)
    deps.closers.append(candles.close)
    sources = candle_sources(exchanges)
    if settings.candle_backfill and sources:
        backfill = Backfill(deps.redis, deps.table, sources, owner)
        deps.consumers.append(backfill)
        deps.flushers.append(backfill.flush)
        deps.closers.append(backfill.close)
    starter = push.get_broadcast_starter(settings)
    if starter is not None:  # a WebSocket API to push to: every slot this container owns goes out
        broadcast = SlotBroadcast(settings, starter)
        deps.consumers.append(broadcast)
        deps.flushers.append(broadcast.flush)
        deps.closers.append(broadcast.close)
    listings = {name: Listing(name, refresh_ms, watch_ms=settings.listing_watch_ms) for name in exchanges}
    state = ContainerState({name: ExchangeMemory(listing) for name, listing in listings.items()})
    return Fetcher(deps, state)
