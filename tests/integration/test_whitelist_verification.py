"""The fetcher verifies submissions and re-checks listed pairs with the calls it already makes."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable

import pytest

from fetcher.deps import Fetcher
from fetcher.loop import LoopSummary, run_slot
from local_stack.binance_simulator import BinanceSimulator
from local_stack.lambda_context import LocalLambdaContext
from market_data import store
from market_data.clock import now_ms
from market_data.models import PairRecord
from prices_api.handler import lambda_handler as prices_handler
from tests.support import failing_transactions, load_event

_slots = itertools.count(10_000)


def tick(container: Fetcher) -> None:
    summary = LoopSummary()
    run_slot(container, next(_slots), "verify-test", summary)
    assert summary.failed == 0


def record(container: Fetcher, pair: str) -> PairRecord:
    found = store.get_record(container.deps.table, pair)
    assert found is not None
    return found


def submit(container: Fetcher, pair: str) -> None:
    store.create_submission(
        container.deps.table, pair, source="192.0.2.1", now_ms=now_ms(), max_pending=100, max_per_source=100
    )


def prices(pairs: str) -> dict[str, object]:
    event = load_event("prices_get.json")
    event["queryStringParameters"] = {"pairs": pairs}
    return prices_handler(event, LocalLambdaContext("prices", 6))


def test_a_listed_trading_pair_is_activated_within_two_ticks_and_then_served(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    container = make_container()
    tick(container)  # registry seeded, listing cached
    submit(container, "SOL/USDT")
    simulator.reset_requests()

    tick(container)

    sol = record(container, "SOL/USDT")
    assert (sol.status, sol.exchange, sol.symbol) == ("active", "binance", "SOLUSDT")
    assert sol.verifiedAt is not None and sol.lastStatusChange is not None
    assert sol.lastStatusChange.from_status == "pending"
    # verification cost no request of its own: one ticker request carried every symbol
    tickers = [r for r in simulator.requests if r.path == "/api/v3/ticker/24hr"]
    assert len(tickers) == 1 and "SOLUSDT" in tickers[0].params["symbols"]
    response = prices("BTC/USDT,SOL/USDT")
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["SOL/USDT"]["symbol"] == "SOLUSDT"


@pytest.mark.parametrize(
    ("pair", "setup", "reason"),
    [
        ("FOO/USDT", None, "binance does not list FOO/USDT"),
        ("ETH/BTC", None, "not trading (status BREAK)"),
        ("XRP/USDT", "halt", "not trading (status HALT)"),
        ("ADA/USDT", "illiquid", "illiquid"),
    ],
)
def test_pairs_that_cannot_be_served_are_rejected_with_a_reason(
    make_container: Callable[..., Fetcher],
    simulator: BinanceSimulator,
    pair: str,
    setup: str | None,
    reason: str,
) -> None:
    env = {"WHITELIST_MIN_QUOTE_VOLUME": "1e15"} if setup == "illiquid" else {}
    container = make_container(**env)
    tick(container)
    if setup == "halt":
        simulator.set_status("XRPUSDT", "HALT")
    submit(container, pair)

    tick(container)
    tick(container)

    rejected = record(container, pair)
    assert rejected.status == "rejected"
    assert rejected.reason is not None and reason in rejected.reason
    assert prices(pair)["statusCode"] == 404  # not listed: never served, nothing to retry


def test_a_pair_listed_after_our_copy_of_the_listing_is_not_rejected(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    container = make_container()
    tick(container)  # listing cached without NEWUSDT
    simulator.add_symbol("NEWUSDT", "NEW", "USDT", price=2.5)
    submit(container, "NEW/USDT")

    tick(container)

    assert record(container, "NEW/USDT").status == "active"


def test_a_pair_that_stops_trading_is_suspended_served_stale_and_returns_when_it_trades(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    container = make_container()
    tick(container)
    simulator.set_status("ETHUSDT", "HALT")
    container.state.exchanges["binance"].listing.next_read_at = 0  # the re-check time comes

    tick(container)

    eth = record(container, "ETH/USDT")
    assert eth.status == "suspended" and "HALT" in (eth.reason or "")
    entry = json.loads(prices("ETH/USDT")["body"])["ETH/USDT"]
    assert (entry["stale"], entry["source"]) == (True, "last_known_good")  # never fresh-looking

    simulator.set_status("ETHUSDT", "TRADING")
    container.state.exchanges["binance"].listing.next_read_at = 0
    tick(container)
    assert record(container, "ETH/USDT").status == "active"
    entry = json.loads(prices("ETH/USDT")["body"])["ETH/USDT"]
    assert (entry["stale"], entry["source"]) == (False, "cache")


def test_a_transient_error_during_a_recheck_changes_no_status(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    container = make_container()
    tick(container)
    simulator.remove_symbol("ETHUSDT")
    simulator.set_fault("server_error", path="/api/v3/exchangeInfo", status=503)
    container.state.exchanges["binance"].listing.next_read_at = 0

    tick(container)
    tick(container)

    assert record(container, "ETH/USDT").status == "active"  # a 5xx is not the exchange's listing


def test_a_revoked_pair_is_not_fetched_from_the_next_slot(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    container = make_container()
    tick(container)
    store.change_status(
        container.deps.table,
        "ETH/USDT",
        to="revoked",
        reason="revoked by an operator",
        now_ms=now_ms(),
        allowed_from=["active"],
    )
    simulator.reset_requests()

    tick(container)

    asked = [s for r in simulator.requests if r.path == "/api/v3/ticker/24hr" for s in r.params["symbols"]]
    assert asked == ["BTCUSDT"]
    response = prices("BTC/USDT,ETH/USDT")
    assert response["statusCode"] == 206 and response["headers"]["X-Missing-Pairs"] == "ETH/USDT"


def test_a_status_change_cancelled_by_a_conflict_is_retried_and_the_tick_writes_prices(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    # Given a pending pair that trades, and DynamoDB cancelling the next status change (a conflict)
    container = make_container()
    tick(container)
    submit(container, "SOL/USDT")
    failing_transactions(container.deps.table, "TransactionConflict", times=1)
    before = json.loads(prices("BTC/USDT")["body"])["BTC/USDT"]["fetchedAt"]

    # When the tick that verifies it runs
    tick(container)  # no tick failure: asserted by tick()

    # Then prices were written regardless, and the verdict waits for the next tick
    assert json.loads(prices("BTC/USDT")["body"])["BTC/USDT"]["fetchedAt"] > before
    assert record(container, "SOL/USDT").status == "pending"
    tick(container)
    assert record(container, "SOL/USDT").status == "active"


def test_a_pending_pair_never_verified_within_the_expiry_is_rejected_with_the_reason(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    # Given a pair Binance lists as trading but whose ticker never validates, pending for longer
    # than WHITELIST_PENDING_EXPIRY_MS (5 minutes by default), and one submitted just now
    container = make_container()
    tick(container)
    simulator.set_bad_ticker("SOLUSDT", "nan")
    simulator.set_bad_ticker("XRPUSDT", "nan")
    store.create_submission(
        container.deps.table, "SOL/USDT", source="192.0.2.1", now_ms=now_ms() - 6 * 60_000,
        max_pending=100, max_per_source=100,
    )  # fmt: skip
    submit(container, "XRP/USDT")

    # When a tick judges them
    tick(container)

    # Then the old one is rejected, saying why, and the new one waits its turn
    sol = record(container, "SOL/USDT")
    assert sol.status == "rejected"
    assert sol.reason is not None and "not verified within 300 s" in sol.reason and "price" in sol.reason
    assert record(container, "XRP/USDT").status == "pending"


def test_verification_never_serves_more_pairs_than_the_cap(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    # Given two pairs served (the seeds), a cap of three, and two trading pairs pending
    container = make_container(WHITELIST_MAX_ACTIVE="3")
    tick(container)
    submit(container, "SOL/USDT")
    submit(container, "XRP/USDT")

    tick(container)

    # Then the first submitted is served, and the other refused, saying why
    assert record(container, "SOL/USDT").status == "active"
    refused = record(container, "XRP/USDT")
    assert refused.status == "rejected" and "WHITELIST_MAX_ACTIVE" in (refused.reason or "")


def test_a_pair_delisted_then_listed_again_is_served_again_within_a_minute(
    make_container: Callable[..., Fetcher], simulator: BinanceSimulator
) -> None:
    import time

    # Given listings watched every LISTING_WATCH_MS (a minute by default; 2 s here) while a pair is
    # suspended or refused
    container = make_container(LISTING_WATCH_MS="2000")
    tick(container)

    # When Binance stops listing ETHUSDT: refused, then suspended at the next listing read
    simulator.remove_symbol("ETHUSDT")
    tick(container)
    time.sleep(2.1)
    tick(container)
    assert record(container, "ETH/USDT").status == "suspended"
    health = json.loads(
        prices_handler(load_event("health_get.json"), LocalLambdaContext("prices", 6))["body"]
    )
    assert "ETH/USDT" in (health["fetcher"]["listingWatch"] or "")

    # and lists it again 2 s later
    simulator.add_symbol("ETHUSDT", "ETH", "USDT", price=3000.0)
    time.sleep(2.1)
    tick(container)  # the listing read shows it trading: active again
    tick(container)  # and fetched: its refusal is forgotten once a listing read after it trades it

    # Then it is served fresh again, from the exchange that lists it
    assert record(container, "ETH/USDT").status == "active"
    entry = json.loads(prices("ETH/USDT")["body"])["ETH/USDT"]
    assert (entry["source"], entry["stale"], entry["symbol"]) == ("cache", False, "ETHUSDT")
