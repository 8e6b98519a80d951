"""The Binance adapter read against the exchange's documented payloads in ../shared/fixtures."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fetcher.exchanges.base import ExchangeError, RateLimitedError
from fetcher.exchanges.binance import (
    BINANCE_US,
    BinanceClient,
    InvalidSymbolError,
    parse_ticker,
    ticker_weight,
)
from tests.support import FIXTURES, answering_http

BINANCE = FIXTURES / "binance"


def fixture(name: str) -> Any:
    return json.loads((BINANCE / name).read_text())


def client_answering(status: int, body: bytes | str, headers: dict[str, str] | None = None) -> BinanceClient:
    """A client whose transport answers every request with one documented response."""
    http, seen = answering_http(status, body, headers)
    client = BinanceClient(http, "https://api.binance.test")
    client.seen = seen  # type: ignore[attr-defined]
    return client


def test_full_ticker_fixture_parses_to_the_contract_fields() -> None:
    raw = fixture("ticker_24hr_BTCUSDT.json")
    ticker = parse_ticker(raw, "BTC/USDT", fetched_at=raw["closeTime"] + 150)
    assert ticker.price == 9372.49
    assert ticker.high24h == 9675.0 and ticker.low24h == 9250.0
    assert ticker.volume == pytest.approx(53995.944539)
    assert ticker.quoteVolume == pytest.approx(511715832.08472482)
    assert ticker.timestamp == raw["closeTime"]  # the exchange's own time, not ours
    assert ticker.fetchedAt == raw["closeTime"] + 150
    # Rolling 24 h change computed from open and last agrees with Binance's own figure.
    assert ticker.change24h == pytest.approx(float(raw["priceChangePercent"]), abs=0.001)
    assert (ticker.exchange, ticker.symbol) == ("binance", "BTCUSDT")


def test_mini_ticker_fixture_parses_without_price_change_fields() -> None:
    raw = fixture("ticker_24hr_mini_example.json")
    ticker = parse_ticker(raw, "BNB/BTC", fetched_at=raw["closeTime"])
    assert ticker.price == 4.000002
    assert ticker.change24h == pytest.approx((4.000002 - 99) / 99 * 100, abs=1e-3)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("lastPrice", "0.00000000", "price"),
        ("lastPrice", "-1.00000000", "price"),
        ("lastPrice", "NaN", "price"),
        ("highPrice", "9000.00000000", "high24h"),  # below lowPrice 9250
        ("volume", "-5", "volume"),
        ("closeTime", "not-a-number", "malformed"),
    ],
)
def test_bad_ticker_values_are_rejected(field: str, value: str, reason: str) -> None:
    raw = fixture("ticker_24hr_BTCUSDT.json") | {field: value}
    with pytest.raises(ValueError, match=reason):
        parse_ticker(raw, "BTC/USDT", fetched_at=1582670961115)


def test_missing_field_is_rejected_naming_it() -> None:
    raw = fixture("ticker_24hr_BTCUSDT.json")
    del raw["lastPrice"]
    with pytest.raises(ValueError, match="lastPrice"):
        parse_ticker(raw, "BTC/USDT", fetched_at=raw["closeTime"])


def test_timestamps_in_the_future_or_older_than_a_day_are_rejected() -> None:
    raw = fixture("ticker_24hr_BTCUSDT.json")
    with pytest.raises(ValueError, match="future"):
        parse_ticker(raw, "BTC/USDT", fetched_at=raw["closeTime"] - 5 * 60_000)
    with pytest.raises(ValueError, match="24 h"):
        parse_ticker(raw, "BTC/USDT", fetched_at=raw["closeTime"] + 25 * 3_600_000)


def test_exchange_info_fixture_maps_pairs_through_base_and_quote_assets() -> None:
    client = client_answering(200, (BINANCE / "exchange_info_excerpt.json").read_bytes())
    info = client.exchange_info()
    assert info.by_pair["BTC/USDT"].symbol == "BTCUSDT"
    assert info.by_pair["BTC/USDT"].status == "TRADING"
    assert info.by_pair["ETH/BTC"].status == "BREAK"
    assert "BTC/USD" not in info.by_pair  # binance.com lists no USD pairs; nothing is guessed
    assert info.weight_limit_1m == 6000


def test_tickers_request_sends_symbols_as_a_compact_json_array() -> None:
    body = json.dumps([fixture("ticker_24hr_BTCUSDT.json")])
    client = client_answering(200, body, {"X-MBX-USED-WEIGHT-1M": "12"})
    assert client.tickers(["BTCUSDT", "ETHUSDT"])[0]["symbol"] == "BTCUSDT"
    request = client.seen[0]  # type: ignore[attr-defined]
    assert request.url.path == "/api/v3/ticker/24hr"
    assert request.url.params["symbols"] == '["BTCUSDT","ETHUSDT"]'
    assert client.last_used_weight == 12


def test_invalid_symbol_fixture_raises_invalid_symbol() -> None:
    client = client_answering(400, (BINANCE / "error_invalid_symbol.json").read_bytes())
    with pytest.raises(InvalidSymbolError):
        client.tickers(["BTCUSDT", "NOPEUSDT"])


@pytest.mark.parametrize(
    ("status", "name", "kind"),
    [(429, "error_429_too_much_weight.json", "rate_limited"), (418, "error_418_banned.json", "banned")],
)
def test_rate_limit_fixtures_carry_retry_after(status: int, name: str, kind: str) -> None:
    client = client_answering(status, (BINANCE / name).read_bytes(), {"Retry-After": "37"})
    with pytest.raises(RateLimitedError) as raised:
        client.tickers(["BTCUSDT"])
    assert raised.value.retry_after_s == 37
    assert raised.value.kind == kind


def test_restricted_location_fixture_is_its_own_kind() -> None:
    client = client_answering(451, (BINANCE / "error_451_restricted_location.json").read_bytes())
    with pytest.raises(ExchangeError) as raised:
        client.tickers(["BTCUSDT"])
    assert raised.value.kind == "restricted_location"
    assert "restricted location" in str(raised.value)
    assert raised.value.advice is not None and "non-US region" in raised.value.advice


def test_binance_us_refusing_a_location_gets_no_binance_com_advice() -> None:
    http, _ = answering_http(451, (BINANCE / "error_451_restricted_location.json").read_bytes())
    client = BinanceClient(http, "https://api.binance.us.test", name=BINANCE_US)
    with pytest.raises(ExchangeError) as raised:
        client.exchange_info()
    assert raised.value.kind == "restricted_location" and raised.value.advice is None


def test_non_json_5xx_is_counted_as_http_5xx() -> None:
    client = client_answering(502, "<html>Bad Gateway</html>")
    with pytest.raises(ExchangeError) as raised:
        client.tickers(["BTCUSDT"])
    assert raised.value.kind == "http_5xx"


@pytest.mark.parametrize(("count", "weight"), [(1, 2), (20, 2), (21, 40), (100, 40), (101, 80)])
def test_ticker_weight_follows_binance_rules(count: int, weight: int) -> None:
    assert ticker_weight(count) == weight


def test_change_is_not_a_number_when_open_is_zero() -> None:
    raw = fixture("ticker_24hr_BTCUSDT.json") | {"openPrice": "0"}
    with pytest.raises(ValueError, match="change24h"):
        parse_ticker(raw, "BTC/USDT", fetched_at=raw["closeTime"])
