"""What the fetcher shares between invocations through the cache: failure holds and slow figures."""

from __future__ import annotations

import orjson

from fetcher.exchanges.coinbase import CoinbaseExchange
from fetcher.exchanges.kraken import KrakenExchange
from fetcher.exchanges.pacing import KEPT_MAX_AGE_MS, Kept, merge_kept, share_kept
from fetcher.routing import MAX_HOLD_MS, FailureHolds, Hold

NOW = 1_700_000_000_000


def cached(value: object, read_at: int) -> bytes:
    return orjson.dumps({"value": value, "readAt": read_at})


def test_holds_round_trip_through_the_cache_and_long_ended_ones_are_dropped() -> None:
    holds = FailureHolds(
        {
            ("binance", "BTC/USDT"): Hold(NOW + 30_000, 1),
            ("kraken", "DOGE/USD"): Hold(NOW - 3 * MAX_HOLD_MS, 4),  # over long ago: forgotten
        }
    )
    fields = holds.as_fields(NOW)
    assert fields == {"binance|BTC/USDT": f"{NOW + 30_000},1"}
    assert FailureHolds.from_fields({**fields, "garbage": "x", "a|B/C": "soon,1"}).holds == {
        ("binance", "BTC/USDT"): Hold(NOW + 30_000, 1)
    }


def test_a_newer_figure_from_another_invocation_replaces_this_one_s_and_an_older_one_does_not() -> None:
    kept = {"BTC-USD": Kept({"open": "1", "high": "2", "low": "1"}, NOW - 10_000)}
    newer = {"open": "3", "high": "4", "low": "2"}
    unusable = merge_kept(
        kept,
        {"BTC-USD": cached(newer, NOW - 1_000), "ETH-USD": cached(newer, NOW - 2_000)},
        now_ms=NOW,
        accept=CoinbaseExchange.accept_kept,
    )
    assert unusable == []
    assert kept["BTC-USD"] == Kept(newer, NOW - 1_000) and "ETH-USD" in kept

    merge_kept(
        kept,
        {"BTC-USD": cached({"open": "9", "high": "9", "low": "9"}, NOW - 5_000)},
        now_ms=NOW,
        accept=lambda _: True,
    )
    assert kept["BTC-USD"].value == newer  # the older copy does not win


def test_malformed_too_old_or_future_figures_are_not_served_and_are_deleted() -> None:
    accept = KrakenExchange.accept_kept
    kept: dict[str, Kept] = {"XXBTZUSD": Kept(60_000.0, NOW - KEPT_MAX_AGE_MS - 1)}  # too old in memory too
    unusable = merge_kept(
        kept,
        {
            "A": b"not json",
            "B": orjson.dumps({"readAt": NOW}),  # no value
            "C": cached("60000", NOW),  # a string where the parser takes a number
            "D": cached(-1.0, NOW),
            "E": cached(1.0, NOW - KEPT_MAX_AGE_MS - 1),
            "F": cached(1.0, NOW + 3_600_000),  # a broken clock: would never be due again
            "G": cached(2.5, NOW - 1_000),
        },
        now_ms=NOW,
        accept=accept,
    )
    assert sorted(unusable) == ["A", "B", "C", "D", "E", "F"]
    assert kept == {"G": Kept(2.5, NOW - 1_000)}


def test_only_figures_read_this_tick_are_written_back() -> None:
    kept = {"old": Kept(1.0, NOW - 60_000), "new": Kept(2.0, NOW + 5)}
    assert set(share_kept(kept, since_ms=NOW)) == {"new"}
