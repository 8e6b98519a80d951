"""Backfill's time for new pairs within each exchange's budget: the production ``Backfill`` asks
each simulator (over real HTTP, candles as the exchanges document them) for a few pairs' history at
the exchange's real pace, one pair after another, into a real redis-server and moto."""

from __future__ import annotations

import time
from typing import Any

from bench.common import Row, configure_service, generated_pairs, quiet_stdout, real_parts

SCENARIO = "history"


def measure_backfill(pairs_wanted: int, sample: int) -> list[Row]:
    from local_stack.coinbase_simulator import CoinbaseSimulator
    from local_stack.kraken_simulator import KrakenSimulator

    rows = []
    with real_parts(generated_pairs=sample) as stack:
        binance_pairs = generated_pairs(sample)
        with CoinbaseSimulator(seed=5) as coinbase, KrakenSimulator(seed=5) as kraken:
            coinbase_pairs = [("BTC/USD", "BTC-USD"), ("ETH/USD", "ETH-USD"), ("SOL/USD", "SOL-USD")]
            kraken_pairs = [("BTC/USD", "XXBTZUSD"), ("ETH/USD", "XETHZUSD"), ("SOL/USD", "SOLUSD")]
            exchanges = {
                "binance": (stack.exchange_url, [(p, p.replace("/", "")) for p in binance_pairs]),
                "coinbase": (coinbase.base_url, coinbase_pairs),
                "kraken": (kraken.base_url, kraken_pairs),
            }
            for name, (url, pairs) in exchanges.items():
                rows.append(_one_exchange(stack, name, url, pairs[:sample], pairs_wanted))
    return rows


def _one_exchange(stack: Any, name: str, url: str, pairs: list[tuple[str, str]], pairs_wanted: int) -> Row:
    from fetcher.backfill import Backfill, candle_sources
    from fetcher.deps import build_fetcher
    from market_data import cache, store
    from market_data.config import get_settings

    configure_service(
        stack, [pair for pair, _ in pairs], EXCHANGES=f'["{name}"]', **{f"{name.upper()}_API_BASE_URL": url},
        CANDLE_BACKFILL="false",
    )  # fmt: skip
    settings = get_settings()
    container = build_fetcher(settings)
    source = candle_sources(container.deps.exchanges)[name]
    backfill = Backfill(cache.get_client(settings), store.get_table(settings), {name: source}, owner="bench")
    calls: list[float] = []
    asked = source.candles

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(time.monotonic())
        return asked(*args, **kwargs)

    source.candles = counted  # type: ignore[method-assign]
    started = time.monotonic()
    with quiet_stdout():
        done = sum(backfill.backfill(pair, source, symbol) for pair, symbol in pairs)
    seconds = time.monotonic() - started
    backfill.close()
    container.close()
    if done != len(pairs):
        raise RuntimeError(f"{name}: {done} of {len(pairs)} pairs backfilled")
    per_pair_s = seconds / len(pairs)
    requests_per_pair = len(calls) / len(pairs)
    return Row(
        SCENARIO,
        f"backfill of {pairs_wanted} new pairs from {name}, at its backfill pace",
        {
            "requests_per_pair": round(requests_per_pair, 1),
            "s_per_pair": round(per_pair_s, 2),
            "minutes_for_100": round(per_pair_s * pairs_wanted / 60, 1),
            "requests_per_s": round(len(calls) / seconds, 2),
            "gap_s": source.backfill_gap_s,
        },
        limit=f"one request every {source.backfill_gap_s:g} s (what the tick leaves of {name}'s rate)",
        notes=[f"measured on {len(pairs)} pairs one after another; 100 pairs are the same requests again"],
    )
