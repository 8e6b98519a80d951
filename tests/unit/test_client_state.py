"""The Python client's pure parts: the clock-skew bounds, the stale rules, the statuses, backoff and
parsing. No network."""

from __future__ import annotations

import json
from email.utils import formatdate
from typing import Any

import pytest
from market_data_client import Backoff, ClockSkew, compute_state
from market_data_client.api import PricesAnswer, normalise_pairs, stream_url_for
from market_data_client.errors import InvalidPairError, ResponseFormatError, UnavailableError
from market_data_client.models import parse_entry, parse_history
from market_data_client.tracker import Tracker

NOW_MS = 1_795_431_028_000.0  # a whole second, so Date headers below are exact


def api_entry(pair: str = "BTC/USDT", *, timestamp: float = NOW_MS, **changes: Any) -> dict[str, Any]:
    entry = {
        "pair": pair, "price": 67081.3, "volume": 3030.8, "quoteVolume": 204711662.2,
        "timestamp": int(timestamp), "fetchedAt": int(timestamp) + 2, "change24h": -1.9, "high24h": 68571.18,
        "low24h": 65701.65, "exchange": "binance", "symbol": "BTCUSDT", "stale": False, "source": "cache",
    }  # fmt: skip
    entry.update(changes)
    return entry


def date_header(server_ms: float) -> str:
    return formatdate(server_ms / 1000, usegmt=True)


# --- clock skew ----------------------------------------------------------------------------------


def test_one_answer_bounds_the_skew_within_the_date_headers_second_and_the_round_trip() -> None:
    skew = ClockSkew()
    # The server's clock is 10.3 s ahead; the answer took 100 ms.
    skew.observe_date(date_header(NOW_MS + 10_300), sent_ms=NOW_MS, received_ms=NOW_MS + 100)
    assert skew.bounds is not None
    assert skew.bounds.low_ms <= 10_300 <= skew.bounds.high_ms
    assert skew.bounds.high_ms - skew.bounds.low_ms == pytest.approx(1_100)


def test_bounds_intersect_across_answers_and_tighten_below_a_second() -> None:
    skew, true_offset = ClockSkew(), 10_300.0
    for local in (NOW_MS, NOW_MS + 4_250, NOW_MS + 8_500, NOW_MS + 12_750):
        server_ms = local + 50 + true_offset  # the server stamps Date 50 ms after the request left
        skew.observe_date(date_header(server_ms), sent_ms=local, received_ms=local + 100)
    assert skew.bounds is not None
    assert skew.bounds.low_ms <= true_offset <= skew.bounds.high_ms
    assert skew.bounds.uncertainty_ms < 400
    assert abs(skew.offset_ms - true_offset) < 400


def test_a_clock_jump_starts_the_estimate_over_instead_of_keeping_contradicting_bounds() -> None:
    skew = ClockSkew()
    skew.observe_date(date_header(NOW_MS), sent_ms=NOW_MS, received_ms=NOW_MS + 50)
    skew.observe_date(
        date_header(NOW_MS + 4_000 + 60_000), sent_ms=NOW_MS + 4_000, received_ms=NOW_MS + 4_050
    )
    assert skew.restarts == 1
    assert skew.offset_ms == pytest.approx(60_000, abs=600)


def test_a_server_stamp_alone_starts_the_bounds_so_ages_are_measured_without_any_http_answer() -> None:
    skew = ClockSkew()
    skew.observe_server_time(NOW_MS + 10_000, NOW_MS + 300)  # a heartbeat from a clock 10 s ahead
    assert skew.known and skew.bounds is not None
    assert skew.bounds.low_ms >= 9_700 and skew.bounds.high_ms <= 10_700
    # A stale price then turns stale by age though no HTTP read ever answered (no Date at all).
    old = api_entry(timestamp=NOW_MS + 10_000 - 20_000)
    view = compute_state(
        ["BTC/USDT"], entries(old), server_now_ms=skew.server_now_ms(NOW_MS + 300),
        threshold_ms=12_000, outcome="ok", answered=True,
    ).pairs["BTC/USDT"]  # fmt: skip
    assert view.stale and view.age_ms is not None and 19_000 < view.age_ms < 21_000


def test_a_server_stamp_raises_the_lower_bound_and_an_unreadable_date_changes_nothing() -> None:
    skew = ClockSkew()
    skew.observe_date(date_header(NOW_MS + 5_000), sent_ms=NOW_MS, received_ms=NOW_MS + 200)
    assert skew.bounds is not None
    high = skew.bounds.high_ms
    skew.observe_server_time(NOW_MS + 100 + 5_700, NOW_MS + 150)  # stamped, received 150 ms in
    assert skew.bounds.low_ms == pytest.approx(5_650) and skew.bounds.high_ms == high
    skew.observe_date("not a date", NOW_MS, NOW_MS)
    assert skew.bounds.low_ms == pytest.approx(5_650)


# --- stale rules and statuses --------------------------------------------------------------------


def entries(*raw: dict[str, Any]) -> dict[str, Any]:
    return {entry["pair"]: parse_entry(entry) for entry in raw}


def test_a_fresh_price_is_fresh_and_the_status_polling() -> None:
    state = compute_state(["BTC/USDT"], entries(api_entry(timestamp=NOW_MS - 2_000)), server_now_ms=NOW_MS)
    view = state.pairs["BTC/USDT"]
    assert (view.stale, view.age_ms, view.reason) == (False, 2_000, "")
    assert state.status == "polling" and not state.is_stale and state.stale_pairs == ()
    assert state.last_server_update == int(NOW_MS - 2_000) + 2


def test_stale_when_the_server_says_so_even_if_young() -> None:
    state = compute_state(["BTC/USDT"], entries(api_entry(stale=True)), server_now_ms=NOW_MS)
    assert state.status == "stale" and state.stale_pairs == ("BTC/USDT",)
    assert "server" in state.pairs["BTC/USDT"].reason


def test_a_last_known_good_copy_is_stale_whatever_its_flag() -> None:
    state = compute_state(["BTC/USDT"], entries(api_entry(source="last_known_good")), server_now_ms=NOW_MS)
    assert state.pairs["BTC/USDT"].stale and "last known good" in state.pairs["BTC/USDT"].reason


def test_stale_when_its_age_passes_the_threshold_though_the_server_said_fresh() -> None:
    held = entries(api_entry(timestamp=NOW_MS - 13_000))  # fresh when answered, 13 s ago
    state = compute_state(["BTC/USDT"], held, server_now_ms=NOW_MS, threshold_ms=12_000)
    assert state.status == "stale" and state.stale_pairs == ("BTC/USDT",)
    assert "13.0 s old" in state.pairs["BTC/USDT"].reason
    just_under = compute_state(["BTC/USDT"], held, server_now_ms=NOW_MS - 1_001, threshold_ms=12_000)
    assert just_under.status == "polling"


def test_age_is_on_the_servers_clock_so_a_client_clock_off_by_10_s_flags_nothing() -> None:
    tracker = Tracker(("BTC/USDT",), threshold_ms=5_000)
    server_now = NOW_MS + 10_000  # this machine is 10 s behind the server
    answer = PricesAnswer(
        200, entries(api_entry(timestamp=server_now - 1_000)), (), (), None, date_header(server_now),
        sent_ms=NOW_MS - 50, received_ms=NOW_MS,
    )  # fmt: skip
    tracker.record_answer(answer)
    state = tracker.state(local_now_ms=NOW_MS + 500)
    assert state.status == "polling"
    assert 500 <= (state.pairs["BTC/USDT"].age_ms or 0) <= 2_600
    assert state.skew_ms == pytest.approx(10_000, abs=1_100)


def test_a_pair_with_no_data_yet_is_loading_never_stale_and_nothing_yet_is_unavailable() -> None:
    tracker = Tracker(("BTC/USDT", "ETH/USDT"))
    first = tracker.state(local_now_ms=NOW_MS)
    assert first.status == "unavailable" and not first.is_stale
    assert {view.reason for view in first.pairs.values()} == {"loading"}
    assert first.missing_pairs == ("BTC/USDT", "ETH/USDT") and first.last_server_update is None


def test_a_cold_start_503_is_unavailable_with_its_retry_after_never_error_nor_stale() -> None:
    tracker = Tracker(("BTC/USDT",))
    tracker.record_failure(
        UnavailableError(503, "unavailable", "not fetched yet", {}, 4.0, date_header(NOW_MS)), NOW_MS, NOW_MS
    )
    state = tracker.state(local_now_ms=NOW_MS)
    assert (state.status, state.retry_after_s, state.error, state.is_stale) == ("unavailable", 4.0, "", False)


def test_a_failed_read_is_error_and_keeps_the_prices_it_had_which_then_age() -> None:
    tracker = Tracker(("BTC/USDT",), threshold_ms=12_000)
    tracker.record_answer(
        PricesAnswer(200, entries(api_entry()), (), (), None, date_header(NOW_MS), NOW_MS, NOW_MS)
    )
    from market_data_client.errors import TransportError

    tracker.record_failure(TransportError("connection refused"), NOW_MS + 4_000, NOW_MS + 4_000)
    state = tracker.state(local_now_ms=NOW_MS + 20_000)
    assert state.status == "error" and "refused" in state.error
    assert state.pairs["BTC/USDT"].entry is not None and state.stale_pairs == ("BTC/USDT",)


def test_a_206s_missing_pairs_are_missing_and_the_unlisted_ones_named_apart() -> None:
    tracker = Tracker(("BTC/USDT", "ETH/USDT", "FOO/USDT"))
    tracker.record_answer(
        PricesAnswer(
            206,
            entries(api_entry()),
            ("ETH/USDT", "FOO/USDT"),
            ("FOO/USDT",),
            None,
            date_header(NOW_MS),
            NOW_MS,
            NOW_MS,
        )
    )
    state = tracker.state(local_now_ms=NOW_MS)
    assert state.status == "polling"  # the present pair is fresh; missing is not stale
    assert state.missing_pairs == ("ETH/USDT",) and state.not_listed_pairs == ("FOO/USDT",)
    assert state.pairs["ETH/USDT"].reason == "missing" and not state.pairs["ETH/USDT"].stale


def test_stream_messages_snapshot_update_status_and_heartbeat() -> None:
    tracker = Tracker(("BTC/USDT", "ETH/USDT"), connection="stream")
    tracker.record_answer(PricesAnswer(200, {}, (), (), None, date_header(NOW_MS), NOW_MS, NOW_MS))
    snapshot = {
        "type": "snapshot", "prices": {"BTC/USDT": api_entry()}, "missing": ["ETH/USDT"],
        "status": "degraded", "reason": "pairs not refreshed: ETH/USDT",
    }  # fmt: skip
    assert tracker.apply_message(json.dumps(snapshot), NOW_MS)
    state = tracker.state(local_now_ms=NOW_MS)
    assert state.pairs["ETH/USDT"].reason == "missing" and state.service_status == "degraded"
    update = {"type": "update", "slot": NOW_MS, "prices": {"ETH/USDT": api_entry("ETH/USDT", price=3500)}}
    assert tracker.apply_message(json.dumps(update), NOW_MS)
    assert tracker.apply_message(json.dumps({"type": "status", "status": "ok", "reason": ""}), NOW_MS)
    assert tracker.apply_message(json.dumps({"type": "heartbeat", "at": int(NOW_MS)}), NOW_MS)
    state = tracker.state(local_now_ms=NOW_MS)
    assert set(state.entries) == {"BTC/USDT", "ETH/USDT"} and state.status == "polling"
    assert state.service_status == "ok" and state.connection == "stream"
    assert not tracker.apply_message(json.dumps({"type": "candle", "pair": "BTC/USDT"}), NOW_MS)


# --- backoff -------------------------------------------------------------------------------------


def test_backoff_is_full_jitter_under_a_doubling_ceiling_with_a_cap_and_a_floor() -> None:
    draws: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        draws.append((low, high))
        return 0.0  # the luckiest draw: still never a tight loop

    backoff = Backoff(base_s=0.5, cap_s=30.0, uniform=uniform)
    delays = [backoff.next_delay_s() for _ in range(9)]
    assert [high for _, high in draws] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert all(low == 0 for low, _ in draws) and min(delays) >= 0.05
    backoff.reset()
    assert backoff.ceiling_s() == 0.5


def test_many_clients_dropped_together_spread_their_reconnects() -> None:
    backoffs = [Backoff() for _ in range(200)]
    for backoff in backoffs:  # a few failed attempts each
        for _ in range(3):
            backoff.next_delay_s()
    delays = sorted(backoff.next_delay_s() for backoff in backoffs)
    assert delays[-1] <= 4.0
    assert delays[150] - delays[50] > 1.0  # spread over the window, not bunched


# --- parsing -------------------------------------------------------------------------------------


def test_parsing_names_the_bad_field() -> None:
    with pytest.raises(ResponseFormatError, match=r"entry\.price: expected a finite number"):
        parse_entry(api_entry(price="67081.3"))
    with pytest.raises(ResponseFormatError, match=r"entry\.fetchedAt: missing"):
        parse_entry({k: v for k, v in api_entry().items() if k != "fetchedAt"})
    with pytest.raises(ResponseFormatError, match=r"entry\.source"):
        parse_entry(api_entry(source="exchange"))
    history = parse_history({
        "pair": "BTC/USDT", "interval": "1m", "gaps": [[1, 2]],
        "candles": [{"time": 0, "open": 1, "high": 2, "low": 1, "close": 2, "volume": None, "samples": 3,
                     "source": "samples", "firstAt": 5, "lastAt": 9}],
    })  # fmt: skip
    assert history.candles[0].volume is None and history.gaps == ((1, 2),)


def test_pairs_are_normalised_and_a_bad_one_is_named_before_any_request() -> None:
    assert normalise_pairs(["btc/usdt", " ETH/USDT", "BTC/USDT"]) == ("BTC/USDT", "ETH/USDT")
    with pytest.raises(InvalidPairError, match="'BTC-USDT'"):
        normalise_pairs(["BTC/USDT", "BTC-USDT"])
    assert stream_url_for("http://127.0.0.1:3000") == "ws://127.0.0.1:3000/ws"
    assert stream_url_for("https://api.example.com/") == "wss://api.example.com/ws"
