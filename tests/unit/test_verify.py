"""Whitelist verdicts come only from listings the exchanges returned after the submission."""

from __future__ import annotations

from fetcher.exchanges.base import ExchangeError, ListingEntry
from fetcher.listings import Listing
from fetcher.verify import decide_pending, recheck_listed
from market_data.models import PairRecord, StatusChange, Ticker

BINANCE = {
    "SOL/USDT": ListingEntry("SOLUSDT", "SOL", "USDT", "TRADING", True),
    "XRP/USDT": ListingEntry("XRPUSDT", "XRP", "USDT", "HALT", False),
}
COINBASE = {
    "XRP/USDT": ListingEntry("XRP-USDT", "XRP", "USDT", "online", True),
    "ADA/USD": ListingEntry("ADA-USD", "ADA", "USD", "delisted", False),
}


def binance(read_at: int = 1_500, **options: object) -> Listing:
    return Listing("binance", 300_000, BINANCE, read_at, **options)  # type: ignore[arg-type]


def coinbase(read_at: int = 1_500, **options: object) -> Listing:
    return Listing("coinbase", 300_000, COINBASE, read_at, **options)  # type: ignore[arg-type]


def pending(pair: str, at: int = 1_000) -> PairRecord:
    change = StatusChange(**{"from": None, "to": "pending", "at": at, "reason": "submitted"})
    return PairRecord(pair=pair, status="pending", submittedAt=at, lastStatusChange=change)


def ticker(pair: str, quote_volume: float, exchange: str = "binance") -> Ticker:
    symbol = pair.replace("/", "") if exchange == "binance" else pair.replace("/", "-")
    return Ticker(
        pair=pair, price=1.0, volume=1.0, quoteVolume=quote_volume, timestamp=2_000, fetchedAt=2_000,
        change24h=0.0, high24h=1.0, low24h=1.0, exchange=exchange, symbol=symbol,
    )  # fmt: skip


def verdicts(
    listings: list[Listing], tickers: dict[str, Ticker], minimum: float = 0.0, *, now: int = 2_000
) -> dict[str, tuple[str, str]]:
    records = [pending(pair) for pair in ("SOL/USDT", "XRP/USDT", "FOO/USDT", "ADA/USD")]
    found = decide_pending(
        records, listings, tickers, min_quote_volume=minimum, now=now, expire_after_ms=300_000,
        missing={"SOL/USDT": "exchange error: timeout"}, room=100,
    )  # fmt: skip
    return {t.pair: (t.to, t.reason) for t in found}


def test_a_pair_without_a_verdict_past_the_expiry_is_rejected_saying_why() -> None:
    # pending since 1,000; at 301,001 the five minutes have passed, with no listing read since
    stale = verdicts([binance(read_at=999)], {}, now=301_001)
    assert stale["SOL/USDT"] == ("rejected", "not verified within 300 s: exchange error: timeout")
    assert "listing could be read" in stale["FOO/USDT"][1]
    assert verdicts([binance(read_at=999)], {}, now=301_000) == {}  # not yet


def test_a_listing_older_than_the_submission_decides_nothing() -> None:
    assert verdicts([binance(read_at=999)], {"SOL/USDT": ticker("SOL/USDT", 5.0)}) == {}


def test_a_fresh_listing_decides_listed_halted_and_unlisted_pairs() -> None:
    found = verdicts([binance()], {"SOL/USDT": ticker("SOL/USDT", 5.0)})
    assert found["SOL/USDT"] == ("active", "verified: binance lists SOLUSDT and it is trading")
    assert found["XRP/USDT"] == ("rejected", "binance lists XRPUSDT but it is not trading (status HALT)")
    assert found["FOO/USDT"] == ("rejected", "binance does not list FOO/USDT")


def test_a_trading_pair_without_its_ticker_waits_and_an_illiquid_one_is_rejected() -> None:
    assert "SOL/USDT" not in verdicts([binance()], {})
    illiquid = verdicts([binance()], {"SOL/USDT": ticker("SOL/USDT", 5.0)}, minimum=10.0)["SOL/USDT"]
    assert illiquid[0] == "rejected" and "on binance" in illiquid[1]


def test_a_pair_one_exchange_halts_is_verified_on_another_that_trades_it() -> None:
    found = verdicts([binance(), coinbase()], {"XRP/USDT": ticker("XRP/USDT", 5.0, "coinbase")})
    assert found["XRP/USDT"] == ("active", "verified: coinbase lists XRP-USDT and it is trading")


def test_rejection_as_unlisted_waits_for_every_exchange_s_listing() -> None:
    # coinbase's listing is older than the submission: it might list FOO/USDT, so nothing is concluded
    assert "FOO/USDT" not in verdicts([binance(), coinbase(read_at=999)], {})
    # nor while its refresh fails and an old copy stands in
    assert "FOO/USDT" not in verdicts([binance(), coinbase(conclusive=False)], {})
    # once every listing is read, the reason names each exchange
    found = verdicts([binance(), coinbase()], {})
    assert found["FOO/USDT"] == (
        "rejected",
        "binance does not list FOO/USDT; coinbase does not list FOO/USDT",
    )
    assert found["ADA/USD"][1] == (
        "binance does not list ADA/USD; coinbase lists ADA-USD but it is not trading (status delisted)"
    )


def test_an_exchange_that_refuses_this_location_lists_nothing_we_could_serve() -> None:
    refused = Listing("binance", 300_000, {}, 1_500, refused=ExchangeError("restricted_location", "HTTP 451"))
    found = verdicts([refused, coinbase()], {})
    assert (
        found["FOO/USDT"][1] == "binance refuses requests from this location; coinbase does not list FOO/USDT"
    )


def test_rechecks_suspend_and_restore() -> None:
    active = PairRecord(pair="XRP/USDT", status="active", submittedAt=1)
    gone = PairRecord(pair="DOT/USDT", status="active", submittedAt=1)
    back = PairRecord(pair="SOL/USDT", status="suspended", submittedAt=1)
    fine = PairRecord(pair="SOL/USDT", status="active", submittedAt=1)

    changes = {t.pair: (t.to, t.reason) for t in recheck_listed([active, gone, back], [binance()])}

    assert changes["XRP/USDT"] == ("suspended", "binance reports XRPUSDT as HALT: not trading")
    assert changes["DOT/USDT"] == ("suspended", "binance does not list DOT/USDT")
    assert changes["SOL/USDT"] == ("active", "binance trades SOLUSDT again")
    assert recheck_listed([fine], [binance()]) == []


def test_a_pair_is_suspended_only_when_no_exchange_trades_it() -> None:
    halted_on_binance = PairRecord(pair="XRP/USDT", status="active", submittedAt=1)
    assert recheck_listed([halted_on_binance], [binance(), coinbase()]) == []  # coinbase trades it
    # and not while one listing is unknown: that exchange might trade it
    unknown = Listing("coinbase", 300_000)
    assert recheck_listed([halted_on_binance], [binance(), unknown]) == []
    unreadable = coinbase(conclusive=False)
    assert (
        recheck_listed([PairRecord(pair="DOT/USDT", status="active", submittedAt=1)], [binance(), unreadable])
        == []
    )
