"""What the fetcher hands the broadcaster after a slot: the status the slot saw, and a start that
has left the container before its handler returns (Lambda freezes it after)."""

from __future__ import annotations

import time
from typing import Any

from fetcher.broadcasting import SlotBroadcast, slot_status
from fetcher.tick import WrittenTick
from market_data.config import Settings, load_settings
from market_data.models import Ticker


def _ticker(pair: str) -> Ticker:
    return Ticker(
        pair=pair, price=100.0, volume=1.0, quoteVolume=100.0, timestamp=1, fetchedAt=2, change24h=0.0,
        high24h=101.0, low24h=99.0, exchange="binance", symbol=pair.replace("/", ""),
    )  # fmt: skip


def written(**changes: Any) -> WrittenTick:
    base: dict[str, Any] = {
        "slot": 10, "tickers": {"BTC/USDT": _ticker("BTC/USDT"), "ETH/USDT": _ticker("ETH/USDT")},
        "listed": ["BTC/USDT", "ETH/USDT"], "missing": {}, "cache_written": True,
    }  # fmt: skip
    return WrittenTick(**{**base, **changes})


def test_each_cause_of_a_degraded_slot_is_named_and_a_clean_one_is_ok() -> None:
    assert slot_status(written()) == ("ok", "")
    assert slot_status(written(paused="binance: rate limited")) == (
        "degraded",
        "fetcher paused: binance: rate limited",
    )
    assert slot_status(written(cache_written=False))[1].startswith("cache unreachable")
    status, reason = slot_status(written(missing={"ETH/USDT": "exchange error: http_5xx"}))
    assert (
        status == "degraded" and reason == "1 of 2 pairs not refreshed (ETH/USDT: exchange error: http_5xx)"
    )
    assert slot_status(written(tickers={}, missing={"BTC/USDT": "x", "ETH/USDT": "y"}))[0] == "down"
    status, reason = slot_status(written(failed_over={"BTC/USDT": "coinbase", "ETH/USDT": "coinbase"}))
    assert (status, reason) == ("degraded", "failed over: BTC/USDT, ETH/USDT from coinbase")


class SlowStarter:
    """A broadcaster start that takes a while, as a slow Invoke call would."""

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []
        self.function_name = "BroadcasterFunction"

    def start(self, payload: dict[str, Any]) -> None:
        time.sleep(0.3)
        self.started.append(payload)


def _settings() -> Settings:
    return load_settings({"REDIS_URL": "redis://127.0.0.1:1/0", "MARKET_DATA_TABLE_NAME": "market-data"})


def test_the_slot_never_waits_for_the_start_and_the_handler_waits_before_returning() -> None:
    starter = SlowStarter()
    broadcast = SlotBroadcast(_settings(), starter)  # type: ignore[arg-type]
    try:
        began = time.monotonic()
        broadcast(written())
        assert time.monotonic() - began < 0.1 and starter.started == []  # handed to its own thread

        broadcast.flush(2)

        assert [p["slot"] for p in starter.started] == [10]
        assert starter.started[0] == {
            "slot": 10, "slotMs": 10 * 4000, "pairs": ["BTC/USDT", "ETH/USDT"], "status": "ok", "reason": "",
        }  # fmt: skip
    finally:
        broadcast.close()
