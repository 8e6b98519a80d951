"""Whitelist verdicts come only from a listing the exchange returned after the submission."""

from __future__ import annotations

from fetcher.exchange import ExchangeInfo, SymbolInfo
from fetcher.verify import decide_pending, recheck_listed
from market_data.models import PairRecord, StatusChange, Ticker

INFO = ExchangeInfo(
    by_pair={
        "SOL/USDT": SymbolInfo("SOLUSDT", "SOL", "USDT", "TRADING"),
        "XRP/USDT": SymbolInfo("XRPUSDT", "XRP", "USDT", "HALT"),
    },
    weight_limit_1m=6000,
)


def pending(pair: str, at: int = 1_000) -> PairRecord:
    change = StatusChange(**{"from": None, "to": "pending", "at": at, "reason": "submitted"})
    return PairRecord(pair=pair, status="pending", submittedAt=at, lastStatusChange=change)


def ticker(pair: str, quote_volume: float) -> Ticker:
    return Ticker(
        pair=pair, price=1.0, volume=1.0, quoteVolume=quote_volume, timestamp=2_000, fetchedAt=2_000,
        change24h=0.0, high24h=1.0, low24h=1.0, exchange="binance", symbol=pair.replace("/", ""),
    )  # fmt: skip


def verdicts(listing_fetched_at: int, tickers: dict[str, Ticker], minimum: float = 0.0) -> dict[str, str]:
    records = [pending("SOL/USDT"), pending("XRP/USDT"), pending("FOO/USDT")]
    found = decide_pending(
        records,
        INFO,
        tickers,
        listing_fetched_at=listing_fetched_at,
        min_quote_volume=minimum,
        exchange="binance",
    )
    return {t.pair: t.to for t in found}


def test_a_listing_older_than_the_submission_decides_nothing() -> None:
    assert verdicts(listing_fetched_at=999, tickers={"SOL/USDT": ticker("SOL/USDT", 5.0)}) == {}


def test_a_fresh_listing_decides_listed_halted_and_unlisted_pairs() -> None:
    assert verdicts(1_500, {"SOL/USDT": ticker("SOL/USDT", 5.0)}) == {
        "SOL/USDT": "active",
        "XRP/USDT": "rejected",
        "FOO/USDT": "rejected",
    }


def test_a_trading_pair_without_its_ticker_waits_and_an_illiquid_one_is_rejected() -> None:
    assert "SOL/USDT" not in verdicts(1_500, {})
    assert verdicts(1_500, {"SOL/USDT": ticker("SOL/USDT", 5.0)}, minimum=10.0)["SOL/USDT"] == "rejected"


def test_rechecks_suspend_and_restore() -> None:
    active = PairRecord(pair="XRP/USDT", status="active", submittedAt=1)
    gone = PairRecord(pair="DOT/USDT", status="active", submittedAt=1)
    back = PairRecord(pair="SOL/USDT", status="suspended", submittedAt=1)
    fine = PairRecord(pair="SOL/USDT", status="active", submittedAt=1)

    changes = {
        t.pair: (t.to, t.reason) for t in recheck_listed([active, gone, back], INFO, exchange="binance")
    }

    assert changes["XRP/USDT"][0] == "suspended" and "HALT" in changes["XRP/USDT"][1]
    assert changes["DOT/USDT"] == ("suspended", "binance does not list DOT/USDT")
    assert changes["SOL/USDT"][0] == "active"
    assert recheck_listed([fine], INFO, exchange="binance") == []
