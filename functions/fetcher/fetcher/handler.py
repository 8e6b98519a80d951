"""Lambda entry point of the fetcher: builds its collaborators once, then runs the slot loop."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from aws_lambda_powertools.utilities.typing import LambdaContext

from fetcher import binance
from fetcher.coinbase import CoinbaseClient
from fetcher.kraken import KrakenClient
from fetcher.loop import run_fetcher
from fetcher.sources import BinanceSource, CoinbaseSource, ExchangeSource, KrakenSource
from fetcher.tick import FetcherDeps, ListingDirectory, Venue
from market_data import cache, store
from market_data.config import Settings, exchange_base_url, get_settings
from market_data.observability import logger, traced

_deps: FetcherDeps | None = None


def build_deps(settings: Settings) -> FetcherDeps:
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
    # The listings are re-read every few minutes: that is also when listed pairs are re-checked.
    refresh_ms = min(settings.exchange_info_refresh_ms, settings.whitelist_recheck_ms)
    venues = {
        name: Venue(make_source(name, settings, http, batches), ListingDirectory(refresh_ms))
        for name in settings.exchanges
    }
    return FetcherDeps(
        settings=settings,
        redis=cache.get_client(settings),
        table=store.get_table(settings),
        venues=venues,
        executor=ThreadPoolExecutor(max_workers=len(venues), thread_name_prefix="exchange"),
        closers=[batches.shutdown, http.close],
    )


def make_source(
    name: str, settings: Settings, http: httpx.Client, batches: ThreadPoolExecutor
) -> ExchangeSource:
    """The fetching side of one of EXCHANGES (names checked when the settings were read)."""
    base_url = exchange_base_url(settings, name)
    if name == "coinbase":
        return CoinbaseSource(CoinbaseClient(http, base_url))
    if name == "kraken":
        return KrakenSource(KrakenClient(http, base_url))
    if name == binance.BINANCE_US:
        client = binance.BinanceClient(
            http, base_url, name=name, default_weight_limit_1m=binance.BINANCE_US_WEIGHT_LIMIT_1M
        )
    else:
        client = binance.BinanceClient(http, base_url)
    return BinanceSource(client, batch_size=settings.market_data_batch_size, executor=batches)


def get_deps() -> FetcherDeps:
    global _deps
    if _deps is None:
        _deps = build_deps(get_settings())
    return _deps


@traced
@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = get_deps()
    summary = run_fetcher(
        deps,
        invocation_id=context.aws_request_id,
        remaining_ms=context.get_remaining_time_in_millis,
        run_seconds=deps.settings.fetcher_run_seconds,
    )
    return summary.as_dict()
