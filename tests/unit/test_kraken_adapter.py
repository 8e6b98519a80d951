"""The Kraken adapter read against the exchange's documented payloads in ../shared/fixtures/kraken."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from fetcher.exchanges.base import ExchangeError, RateLimitedError
from fetcher.exchanges.kraken import (
    EXCHANGE,
    PUBLIC_REQUESTS_PER_S,
    KrakenClient,
    parse_ticker,
    service_asset,
)
from tests.support import FIXTURES, answering_http

KRAKEN = FIXTURES / "kraken"
FETCHED_AT = 1_700_000_000_000
HOUR_S = 3600


def fixture(name: str) -> Any:
    return json.loads((KRAKEN / name).read_text())


def fixture_ticker() -> dict[str, Any]:
    return fixture("ticker_XBTUSD.json")["result"]["XXBTZUSD"]


def client_answering(status: int, body: bytes | str | dict, headers: dict[str, str] | None = None) -> Any:
    """A client whose transport answers every request with one response; ``seen`` keeps the requests."""
    http, seen = answering_http(status, body, headers)
    client = KrakenClient(http, "https://api.kraken.test/")
    client.seen = seen  # type: ignore[attr-defined]
    return client


def listed(altname: str, base: str, quote: str, wsname: str | None, status: str = "online") -> dict[str, str]:
    entry = {"altname": altname, "wsname": wsname, "base": base, "quote": quote, "status": status}
    return {key: value for key, value in entry.items() if value is not None}


# A listing in AssetPairs' shape: legacy prefixed names, XBT and XDG, a pair without wsname, a
# dark-pool book, and a pair that is not online.
LISTING = {
    "error": [],
    "result": {
        "XXBTZUSD": listed("XBTUSD", "XXBT", "ZUSD", "XBT/USD"),
        "XETHZUSD": listed("ETHUSD", "XETH", "ZUSD", "ETH/USD"),
        "SOLUSD": listed("SOLUSD", "SOL", "ZUSD", "SOL/USD"),
        "XDGUSD": listed("XDGUSD", "XXDG", "ZUSD", "XDG/USD"),
        "USDTZUSD": listed("USDTUSD", "USDT", "ZUSD", "USDT/USD"),
        "XBTUSDT": listed("XBTUSDT", "XXBT", "USDT", "XBT/USDT"),
        "ETHUSDT": listed("ETHUSDT", "XETH", "USDT", "ETH/USDT"),
        "XXBTZEUR": listed("XBTEUR", "XXBT", "ZEUR", None),
        "XXBTZUSD.d": listed("XBTUSD.d", "XXBT", "ZUSD", None),
        "XETHXXBT": listed("ETHXBT", "XETH", "XXBT", "ETH/XBT", "cancel_only"),
    },
}


# --- parsing the ticker fixture ----------------------------------------------------------------------
def test_ticker_fixture_parses_to_the_contract_fields() -> None:
    # Given the documented ticker and a rolling open read from the candles
    raw = fixture_ticker()
    # When it is parsed
    ticker = parse_ticker(raw, "BTC/USD", symbol="XXBTZUSD", fetched_at=FETCHED_AT, open_24h=30_000.0)
    # Then every field comes from the last-24-hours element, and the time is the fetch time
    assert ticker.price == 30303.2
    assert ticker.volume == 4412.73601799
    assert ticker.quoteVolume == pytest.approx(30689.13205 * 4412.73601799)  # 24 h VWAP x 24 h volume
    assert ticker.high24h == 31631.0 and ticker.low24h == 29868.3
    assert ticker.timestamp == ticker.fetchedAt == FETCHED_AT  # Kraken gives no ticker time
    assert ticker.change24h == round((30303.2 - 30_000.0) / 30_000.0 * 100, 4) == 1.0107
    assert (ticker.exchange, ticker.symbol, ticker.pair) == ("kraken", "XXBTZUSD", "BTC/USD")


def test_change_is_measured_from_the_rolling_open_not_todays_open() -> None:
    raw = fixture_ticker()
    ticker = parse_ticker(raw, "BTC/USD", symbol="XXBTZUSD", fetched_at=FETCHED_AT, open_24h=30303.2)
    assert ticker.change24h == 0.0  # `o` (30502.8, midnight UTC) would have given -0.6531


@pytest.mark.parametrize(
    "change",
    [
        lambda raw: raw.pop("c"),
        lambda raw: raw.update(c=[]),
        lambda raw: raw.update(v=["1.0"]),
        lambda raw: raw.update(h="31631.0"),
        lambda raw: raw.update(p=["x", "y"]),
        lambda raw: raw.update(l=None),
    ],
    ids=["no last trade", "empty last trade", "no 24 h volume", "high not a list", "vwap text", "low null"],
)
def test_malformed_tickers_are_refused_naming_the_pair(change: Any) -> None:
    raw = fixture_ticker()
    change(raw)
    with pytest.raises(ValueError, match="malformed ticker for BTC/USD"):
        parse_ticker(raw, "BTC/USD", symbol="XXBTZUSD", fetched_at=FETCHED_AT, open_24h=30_000.0)


@pytest.mark.parametrize(
    ("field", "value", "reason"), [("c", ["0.00000", "1"], "price"), ("h", ["1", "1"], "high24h")]
)
def test_impossible_values_are_refused(field: str, value: list[str], reason: str) -> None:
    raw = fixture_ticker() | {field: value}
    with pytest.raises(ValueError, match=reason):
        parse_ticker(raw, "BTC/USD", symbol="XXBTZUSD", fetched_at=FETCHED_AT, open_24h=30_000.0)


def test_change_is_not_a_number_without_a_usable_open() -> None:
    with pytest.raises(ValueError, match="change24h"):
        parse_ticker(fixture_ticker(), "BTC/USD", symbol="XXBTZUSD", fetched_at=FETCHED_AT, open_24h=0.0)


# --- mapping Kraken's names -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kraken", "prefixed", "service"),
    [
        ("XXBT", True, "BTC"),
        ("XBT", False, "BTC"),
        ("XXDG", True, "DOGE"),
        ("XDG", False, "DOGE"),
        ("XETH", True, "ETH"),
        ("ZUSD", True, "USD"),
        ("ZEUR", True, "EUR"),
        ("USDT", True, "USDT"),  # four letters, but no class prefix
        ("SOL", True, "SOL"),
    ],
)
def test_asset_names_follow_kraken_prefix_and_alias_rules(kraken: str, prefixed: bool, service: str) -> None:
    assert service_asset(kraken, prefixed=prefixed) == service


def test_listing_maps_pairs_to_service_names_and_canonical_keys() -> None:
    # Given AssetPairs as Kraken lists it
    client = client_answering(200, LISTING)
    # When the adapter reads it
    by_pair = client.asset_pairs()
    # Then pairs carry the service's names and the key Ticker answers under
    assert {pair: info.symbol for pair, info in by_pair.items()} == {
        "BTC/USD": "XXBTZUSD",
        "ETH/USD": "XETHZUSD",
        "SOL/USD": "SOLUSD",
        "DOGE/USD": "XDGUSD",
        "USDT/USD": "USDTZUSD",
        "BTC/USDT": "XBTUSDT",
        "ETH/USDT": "ETHUSDT",
        "BTC/EUR": "XXBTZEUR",  # no wsname: base/quote with their prefixes removed
        "ETH/BTC": "XETHXXBT",
    }
    assert (by_pair["DOGE/USD"].base, by_pair["DOGE/USD"].quote) == ("DOGE", "USD")
    assert by_pair["ETH/BTC"].status == "cancel_only"
    assert client.seen[0].url.path == "/0/public/AssetPairs"


def test_pairs_absent_from_the_listing_are_not_mapped() -> None:
    by_pair = client_answering(200, LISTING).asset_pairs()
    # DOGE/USDT, SOL/USDT and ETH/EUR are all plausible Kraken names, but not listed here: nothing is guessed.
    assert not {"DOGE/USDT", "SOL/USDT", "ETH/EUR", "XBT/USD", "XXBT/ZUSD"} & set(by_pair)


def test_listing_skips_malformed_entries() -> None:
    body = {"error": [], "result": {"BAD": "not an object", "ODD": {"altname": "ODD"}, **LISTING["result"]}}
    assert "BTC/USD" in client_answering(200, body).asset_pairs()


# --- requests and errors ----------------------------------------------------------------------------
def test_tickers_are_batched_and_keyed_by_the_canonical_key() -> None:
    client = client_answering(200, (KRAKEN / "ticker_XBTUSD.json").read_bytes())
    result = client.tickers(["XBTUSD", "ETHUSD"])
    assert list(result) == ["XXBTZUSD"]  # asked by altname, answered under the canonical key
    assert len(client.seen) == 1
    request = client.seen[0]
    assert (request.url.path, request.url.params["pair"]) == ("/0/public/Ticker", "XBTUSD,ETHUSD")


def test_unknown_pair_fixture_is_its_own_kind() -> None:
    client = client_answering(200, (KRAKEN / "error_unknown_pair.json").read_bytes())
    with pytest.raises(ExchangeError) as raised:
        client.tickers(["XBTUSD", "NOPEUSD"])
    assert raised.value.kind == "unknown_pair"
    assert "EQuery:Unknown asset pair" in str(raised.value)


@pytest.mark.parametrize("message", ["EGeneral:Too many requests", "EAPI:Rate limit exceeded"])
@pytest.mark.parametrize("status", [200, 429])
def test_rate_limit_errors_raise_rate_limited(message: str, status: int) -> None:
    client = client_answering(status, {"error": [message], "result": {}})
    with pytest.raises(RateLimitedError) as raised:
        client.tickers(["XBTUSD"])
    assert raised.value.kind == "rate_limited"
    assert raised.value.retry_after_s >= 1
    assert message in str(raised.value)


def test_a_retry_after_header_is_honoured() -> None:
    client = client_answering(429, "Too Many Requests", {"Retry-After": "12"})
    with pytest.raises(RateLimitedError) as raised:
        client.tickers(["XBTUSD"])
    assert raised.value.retry_after_s == 12


@pytest.mark.parametrize("message", ["EService:Unavailable", "EService:Busy"])
def test_service_errors_mean_unavailable(message: str) -> None:
    with pytest.raises(ExchangeError) as raised:
        client_answering(200, {"error": [message], "result": {}}).tickers(["XBTUSD"])
    assert raised.value.kind == "unavailable"


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (502, "<html>502 Bad Gateway</html>", "http_5xx"),
        (500, {"error": ["EService:Unavailable"]}, "http_5xx"),
        (200, "<html>not json</html>", "bad_body"),
        (200, {"error": []}, "bad_body"),
        (200, {"error": [], "result": []}, "bad_body"),
        (200, {"error": ["EGeneral:Invalid arguments"], "result": {}}, "api_error"),
        (403, {"error": [], "result": {}}, "http_4xx"),
    ],
)
def test_other_failures_map_to_kinds(status: int, body: str | dict, kind: str) -> None:
    with pytest.raises(ExchangeError) as raised:
        client_answering(status, body).tickers(["XBTUSD"])
    assert raised.value.kind == kind


def test_warnings_do_not_fail_a_call() -> None:
    body = fixture("ticker_XBTUSD.json") | {"error": ["WGeneral:Deprecated"]}
    assert list(client_answering(200, body).tickers(["XBTUSD"])) == ["XXBTZUSD"]


def test_timeouts_and_network_failures_have_their_kinds() -> None:
    def fail(exc: Exception) -> KrakenClient:
        def answer(request: httpx.Request) -> httpx.Response:
            raise exc

        return KrakenClient(httpx.Client(transport=httpx.MockTransport(answer)), "https://api.kraken.test")

    with pytest.raises(ExchangeError) as raised:
        fail(httpx.ReadTimeout("slow")).tickers(["XBTUSD"])
    assert raised.value.kind == "timeout"
    with pytest.raises(ExchangeError) as raised:
        fail(httpx.ConnectError("refused")).tickers(["XBTUSD"])
    assert raised.value.kind == "network"


# --- rolling open from hourly candles -----------------------------------------------------------------
NOW_MS = (1_700_000_000 // HOUR_S * HOUR_S + 1234) * 1000  # 20 min 34 s into an hour
TARGET_S = NOW_MS // 1000 // HOUR_S * HOUR_S - 24 * HOUR_S  # the hour starting 24 h before this one


def candle(start: int, open_: str, close: str) -> list[Any]:
    return [start, open_, "110.00000", "90.00000", close, "100.00000", "1.00000000", 3]


def ohlc(*candles: list[Any]) -> dict[str, Any]:
    return {"error": [], "result": {"XXBTZUSD": list(candles), "last": candles[-1][0]}}


def test_rolling_open_is_the_open_of_the_candle_24_hours_before_the_current_hour() -> None:
    body = ohlc(
        candle(TARGET_S - HOUR_S, "99.00000", "100.00000"),
        candle(TARGET_S, "100.50000", "101.00000"),
        candle(TARGET_S + HOUR_S, "101.00000", "102.00000"),
    )
    client = client_answering(200, body)
    assert client.rolling_open("XBTUSD", now_ms=NOW_MS) == 100.5
    request = client.seen[0]
    assert (request.url.path, dict(request.url.params)) == (
        "/0/public/OHLC",
        {"pair": "XBTUSD", "interval": "60"},
    )


def test_rolling_open_without_that_candle_is_the_close_before_it() -> None:
    body = ohlc(
        candle(TARGET_S - 2 * HOUR_S, "98.00000", "99.25000"), candle(TARGET_S + HOUR_S, "101", "102")
    )
    assert client_answering(200, body).rolling_open("XBTUSD", now_ms=NOW_MS) == 99.25


def test_rolling_open_of_a_pair_younger_than_a_day_is_its_first_open() -> None:
    body = ohlc(candle(TARGET_S + 5 * HOUR_S, "42.00000", "43.00000"))
    assert client_answering(200, body).rolling_open("XBTUSD", now_ms=NOW_MS) == 42.0


@pytest.mark.parametrize(
    "body",
    [
        {"error": [], "result": {"XXBTZUSD": [], "last": 0}},
        {"error": [], "result": {"last": 0}},
        ohlc([TARGET_S, "zero"]),
        ohlc(candle(TARGET_S, "0.00000", "1.00000")),
    ],
    ids=["no candles", "no pair key", "short candle", "zero open"],
)
def test_rolling_open_refuses_unusable_candles(body: dict[str, Any]) -> None:
    with pytest.raises(ExchangeError) as raised:
        client_answering(200, body).rolling_open("XBTUSD", now_ms=NOW_MS)
    assert raised.value.kind == "bad_body"


def test_documented_public_rate_and_name() -> None:
    assert PUBLIC_REQUESTS_PER_S == 1.0
    assert EXCHANGE == KrakenClient.name == "kraken"
