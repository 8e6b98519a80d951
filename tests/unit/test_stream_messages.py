"""The WebSocket messages a client sends: the same pair rules as ``?pairs=``, an error naming the
bad value for anything else, and the per-connection cap."""

from __future__ import annotations

import orjson
import pytest

from market_data.stream import (
    MAX_PAIRS_PER_CONNECTION,
    ClientMessage,
    StreamMessageError,
    error_message,
    parse_client_message,
    snapshot_status,
)


def test_a_subscription_normalises_and_deduplicates_pairs_as_the_prices_route_does() -> None:
    message = parse_client_message('{"action": "subscribe", "pairs": ["btc/usdt", " ETH/USDT", "BTC/USDT"]}')
    assert message == ClientMessage("subscribe", ("BTC/USDT", "ETH/USDT"))
    with_candles = parse_client_message('{"action": "subscribe", "pairs": ["btc/usdt"], "candles": "1m"}')
    assert with_candles == ClientMessage("subscribe", ("BTC/USDT",), "1m")


@pytest.mark.parametrize(
    ("body", "code", "named"),
    [
        ("{not json", "malformed_json", "{not json"),
        ('["subscribe"]', "malformed_json", "subscribe"),
        ('{"action": "subscrbe", "pairs": ["BTC/USDT"]}', "unknown_action", "subscrbe"),
        ('{"pairs": ["BTC/USDT"]}', "unknown_action", "None"),
        ('{"action": "subscribe", "pairs": "BTC/USDT"}', "invalid_pairs", "BTC/USDT"),
        ('{"action": "subscribe", "pairs": []}', "invalid_pairs", "[]"),
        ('{"action": "subscribe", "pairs": ["BTC-USDT"]}', "invalid_pairs", "BTC-USDT"),
        ('{"action": "unsubscribe", "pairs": [1]}', "invalid_pairs", "[1]"),
        ('{"action": "subscribe", "pairs": ["BTC/USDT"], "candles": "5m"}', "invalid_candles", "'5m'"),
    ],
)
def test_a_bad_message_is_an_error_naming_the_bad_value(body: str, code: str, named: str) -> None:
    with pytest.raises(StreamMessageError) as raised:
        parse_client_message(body)
    assert raised.value.code == code and named in str(raised.value)
    sent = orjson.loads(error_message(raised.value.code, str(raised.value)))
    assert sent == {"type": "error", "error": code, "message": str(raised.value)}


def test_more_than_the_cap_in_one_message_is_refused() -> None:
    many = [f"C{i}/USDT" for i in range(MAX_PAIRS_PER_CONNECTION + 1)]
    with pytest.raises(StreamMessageError, match="too many pairs: 101"):
        parse_client_message(orjson.dumps({"action": "subscribe", "pairs": many}).decode())


def test_a_snapshot_never_calls_stale_or_missing_prices_ok() -> None:
    assert snapshot_status("ok", "", stale=0, missing=0, asked=2) == ("ok", "")
    assert snapshot_status("", "", stale=1, missing=0, asked=2)[0] == "degraded"
    assert snapshot_status("ok", "", stale=0, missing=2, asked=2)[0] == "degraded"
    assert snapshot_status("down", "fetcher stopped", stale=0, missing=2, asked=2) == (
        "down",
        "fetcher stopped",
    )
    assert snapshot_status("degraded", "failed over", stale=0, missing=0, asked=2) == (
        "degraded",
        "failed over",
    )
