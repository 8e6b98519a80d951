"""Routing: each pair on the first exchange, in EXCHANGES order, whose listing has it; failover and back."""

from __future__ import annotations

from fetcher.exchanges.base import ListingEntry
from fetcher.listings import Listing
from fetcher.routing import FIRST_HOLD_MS, MAX_HOLD_MS, FailureHolds, Hold, route_pairs

ORDER = ["binance", "coinbase", "kraken"]
BINANCE = {"BTC/USDT": ListingEntry("BTCUSDT", "BTC", "USDT", "TRADING", True)}
COINBASE = {
    "BTC/USD": ListingEntry("BTC-USD", "BTC", "USD", "online", True),
    "BTC/USDT": ListingEntry("BTC-USDT", "BTC", "USDT", "online", True),
}
KRAKEN = {
    "BTC/USD": ListingEntry("XXBTZUSD", "BTC", "USD", "online", True),
    "DOGE/USD": ListingEntry("XDGUSD", "DOGE", "USD", "online", True),
}
LISTINGS = {"binance": BINANCE, "coinbase": COINBASE, "kraken": KRAKEN}
NOW = 1_700_000_000_000


def where(routing: object) -> dict[str, str]:
    return {pair: route.exchange for pair, route in routing.routes.items()}  # type: ignore[attr-defined]


def test_each_pair_goes_to_the_first_exchange_that_lists_it_under_that_exchanges_own_name() -> None:
    routing = route_pairs(
        ["BTC/USDT", "BTC/USD", "DOGE/USD"], ORDER, LISTINGS, unavailable={}, holds=FailureHolds(), now_ms=NOW
    )

    assert where(routing) == {"BTC/USDT": "binance", "BTC/USD": "coinbase", "DOGE/USD": "kraken"}
    assert {pair: route.symbol for pair, route in routing.routes.items()} == {
        "BTC/USDT": "BTCUSDT", "BTC/USD": "BTC-USD", "DOGE/USD": "XDGUSD",
    }  # fmt: skip
    assert all(route.preferred for route in routing.routes.values())
    assert routing.unserved == {}


def test_the_order_of_exchanges_decides_between_two_that_list_a_pair() -> None:
    routing = route_pairs(
        ["BTC/USD"], ["kraken", "coinbase"], LISTINGS, unavailable={}, holds=FailureHolds(), now_ms=NOW
    )
    assert where(routing) == {"BTC/USD": "kraken"}


def test_an_unavailable_exchange_hands_its_pairs_to_the_next_that_lists_them() -> None:
    routing = route_pairs(
        ["BTC/USDT", "BTC/USD"],
        ORDER,
        LISTINGS,
        unavailable={"binance": "HTTP 451 restricted location"},
        holds=FailureHolds(),
        now_ms=NOW,
    )

    assert where(routing) == {"BTC/USDT": "coinbase", "BTC/USD": "coinbase"}
    assert not routing.routes["BTC/USDT"].preferred


def test_a_pair_that_failed_moves_next_tick_and_returns_when_its_hold_ends_and_the_probe_answers() -> None:
    holds = FailureHolds()
    first = route_pairs(["BTC/USD"], ORDER, LISTINGS, unavailable={}, holds=holds, now_ms=NOW)
    holds.record(first.routes.values(), served=[], failed=["BTC/USD"], now_ms=NOW)  # coinbase lacked it

    moved = route_pairs(["BTC/USD"], ORDER, LISTINGS, unavailable={}, holds=holds, now_ms=NOW + 4_000)
    assert where(moved) == {"BTC/USD": "kraken"}
    holds.record(moved.routes.values(), served=["BTC/USD"], failed=[], now_ms=NOW + 4_000)

    back = route_pairs(["BTC/USD"], ORDER, LISTINGS, unavailable={}, holds=holds, now_ms=NOW + FIRST_HOLD_MS)
    assert where(back) == {"BTC/USD": "coinbase"}  # the probe
    holds.record(back.routes.values(), served=["BTC/USD"], failed=[], now_ms=NOW + FIRST_HOLD_MS)
    assert not holds.holds  # recovered: nothing held anywhere


def test_a_failing_probe_doubles_the_hold_up_to_its_cap() -> None:
    holds = FailureHolds()
    now = NOW
    for _ in range(12):
        holds.failed("coinbase", "BTC/USD", now)
        now = holds.holds[("coinbase", "BTC/USD")].until_ms
    failures = holds.holds[("coinbase", "BTC/USD")].failures
    assert failures == 12
    assert holds.is_held("coinbase", "BTC/USD", now - 1)
    assert not holds.is_held("coinbase", "BTC/USD", now)

    holds.failed("coinbase", "BTC/USD", NOW)
    assert holds.holds[("coinbase", "BTC/USD")].until_ms == NOW + MAX_HOLD_MS


def test_a_pair_is_listed_nowhere_only_when_every_listing_was_read() -> None:
    known = route_pairs(["ETH/EUR"], ORDER, LISTINGS, unavailable={}, holds=FailureHolds(), now_ms=NOW)
    assert known.unserved == {"ETH/EUR": "no configured exchange lists it"}

    partly = route_pairs(
        ["ETH/EUR"], ORDER, {**LISTINGS, "kraken": None}, unavailable={}, holds=FailureHolds(), now_ms=NOW
    )
    assert partly.unserved == {"ETH/EUR": "not listed on any exchange whose listing could be read this tick"}


def test_when_every_source_of_a_pair_is_out_the_reasons_name_each() -> None:
    routing = route_pairs(
        ["BTC/USD"],
        ORDER,
        LISTINGS,
        unavailable={"coinbase": "circuit open", "kraken": "rate limited"},
        holds=FailureHolds(),
        now_ms=NOW,
    )
    assert routing.routes == {}
    assert routing.unserved["BTC/USD"] == "coinbase: circuit open; kraken: rate limited"


def test_a_held_source_is_asked_again_when_no_other_exchange_can_serve_the_pair() -> None:
    routing = route_pairs(
        ["BTC/USD"],
        ORDER,
        LISTINGS,
        unavailable={"coinbase": "circuit open"},
        holds=FailureHolds({("kraken", "BTC/USD"): Hold(until_ms=NOW + 1, failures=1)}),
        now_ms=NOW,
    )
    assert routing.routes["BTC/USD"].exchange == "kraken"  # held, but the only one left
    assert routing.unserved == {}


def test_only_pairs_trading_now_count_as_listed() -> None:
    listing = {
        "BTC/USD": ListingEntry("BTC-USD", "BTC", "USD", "online", True),
        "ADA/BTC": ListingEntry("ADA-BTC", "ADA", "BTC", "trading_disabled", False),
    }
    known = Listing("coinbase", 300_000, by_pair=listing)
    assert set(known.routable() or {}) == {"BTC/USD"}
    assert known.trading("ADA/BTC") is None and known.trading("BTC/USD") is not None


def test_a_pair_only_paced_out_of_a_slot_is_not_held_off_its_source() -> None:
    holds = FailureHolds()
    routing = route_pairs(["BTC/USD"], ORDER, LISTINGS, unavailable={}, holds=holds, now_ms=NOW)

    holds.record(routing.routes.values(), served=[], failed=[], now_ms=NOW)  # the rate ran out first

    again = route_pairs(["BTC/USD"], ORDER, LISTINGS, unavailable={}, holds=holds, now_ms=NOW + 4_000)
    assert where(again) == {"BTC/USD": "coinbase"}
