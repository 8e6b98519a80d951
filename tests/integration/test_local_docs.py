"""docs/local.md says what the demo does: the pairs each simulator trades, as the fetcher reads them
from the simulator over HTTP, and the fault requests it prints. Real parts: the simulators over
HTTP, the fetcher's own exchange adapters."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from local_stack.services import _binance_us_simulator, fault_commands
from tests.support import REPO_ROOT

LOCAL_DOCS = REPO_ROOT / "docs" / "local.md"
# The pairs table's rows: "| Binance | BTC/USDT, ... | ... |"; a name's note in brackets is dropped.
ROW = re.compile(r"^\| (Binance\.US|Binance|Coinbase|Kraken)\b[^|]* \| ([^|]+) \|", re.MULTILINE)


def documented_pairs() -> dict[str, set[str]]:
    """docs/local.md's pairs each simulator trades: simulator name -> pairs."""
    rows = ROW.findall(LOCAL_DOCS.read_text())
    return {name: {pair.strip() for pair in pairs.split(",")} for name, pairs in rows}


@contextmanager
def simulator(name: str) -> Iterator[Any]:
    from local_stack.binance_simulator import BinanceSimulator
    from local_stack.coinbase_simulator import CoinbaseSimulator
    from local_stack.kraken_simulator import KrakenSimulator

    made = {
        "Binance": BinanceSimulator,
        "Binance.US": _binance_us_simulator,
        "Coinbase": CoinbaseSimulator,
        "Kraken": KrakenSimulator,
    }[name]()
    made.start()
    try:
        yield made
    finally:
        made.stop()


def pairs_the_fetcher_reads(exchange: str, base_url: str) -> set[str]:
    """The pairs the fetcher's adapter for ``exchange`` finds trading in the listing at ``base_url``."""
    from fetcher.exchanges.base import BuildContext
    from fetcher.exchanges.registry import REGISTRY
    from market_data.config import load_settings

    settings = load_settings({"REDIS_URL": "redis://127.0.0.1:9/0", "MARKET_DATA_TABLE_NAME": "docs"})
    with httpx.Client(timeout=5) as http, ThreadPoolExecutor(1) as batches:
        adapter = REGISTRY[exchange].build(BuildContext(http, base_url, settings, batches))
        return {pair for pair, entry in adapter.listing().items() if entry.trading}


@pytest.mark.parametrize(
    ("name", "exchange"),
    [("Binance", "binance"), ("Binance.US", "binance_us"), ("Coinbase", "coinbase"), ("Kraken", "kraken")],
)
def test_the_docs_list_the_pairs_each_simulator_trades_as_the_fetcher_reads_them(
    name: str, exchange: str
) -> None:
    documented = documented_pairs()
    assert name in documented, f"docs/local.md has no row for the {name} simulator"

    with simulator(name) as running:
        read = pairs_the_fetcher_reads(exchange, running.base_url)
        printed = set(running.traded_pairs())  # what make demo's start-up lines list

    assert read == documented[name], (
        f"docs/local.md lists {sorted(documented[name])}, the fetcher reads {sorted(read)}"
    )
    assert printed == read


def test_the_docs_failover_recipe_sends_the_fault_the_demo_prints() -> None:
    text = LOCAL_DOCS.read_text()
    fail, recover = fault_commands("http://127.0.0.1:8001")

    assert "SIMULATOR_PORT=8001 make demo" in text
    assert fail in text and recover in text
    # and that request makes the simulator fail every request until cleared
    with simulator("Binance") as running:
        body = json.loads(fail.split(" -d ", 1)[1].strip("'"))
        assert httpx.post(running.base_url + "/_simulator/faults", json=body, timeout=5).status_code == 200
        assert httpx.get(running.base_url + "/api/v3/exchangeInfo", timeout=5).status_code == 503
        assert httpx.delete(running.base_url + "/_simulator/faults", timeout=5).status_code == 200
        assert httpx.get(running.base_url + "/api/v3/exchangeInfo", timeout=5).status_code == 200
