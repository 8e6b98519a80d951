"""Lambda entry point of the fetcher: builds its collaborators once, then runs the slot loop."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from aws_lambda_powertools.utilities.typing import LambdaContext

from fetcher.binance import BinanceClient
from fetcher.loop import run_fetcher
from fetcher.tick import FetcherDeps, SymbolDirectory
from market_data import cache, store
from market_data.config import Settings, get_settings
from market_data.observability import logger

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
        limits=httpx.Limits(max_connections=settings.market_data_max_concurrent_batches + 1),
        headers={"User-Agent": "market-data-fetcher/1"},
    )
    return FetcherDeps(
        settings=settings,
        redis=cache.get_client(settings),
        table=store.get_table(settings),
        exchange=BinanceClient(http, settings.binance_api_base_url),
        executor=ThreadPoolExecutor(
            max_workers=settings.market_data_max_concurrent_batches, thread_name_prefix="batch"
        ),
        # The listing is re-read every few minutes: that is also when listed pairs are re-checked.
        directory=SymbolDirectory(
            refresh_ms=min(settings.exchange_info_refresh_ms, settings.whitelist_recheck_ms)
        ),
    )


def get_deps() -> FetcherDeps:
    global _deps
    if _deps is None:
        _deps = build_deps(get_settings())
    return _deps


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
