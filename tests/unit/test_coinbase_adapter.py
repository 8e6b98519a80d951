"""The Coinbase adapter read against the exchange's documented payloads in ../shared/fixtures/coinbase."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fetcher.exchanges.base import ExchangeError, RateLimitedError
from fetcher.exchanges.coinbase import PUBLIC_RATE_LIMIT_PER_S, CoinbaseClient, parse_ticker
from tests.support import FIXTURES

COINBASE = FIXTURES / "coinbase"
# 2024-03-13T11:10:41.270099Z, the ticker fixture's `time`, in ms since the epoch (written out, not computed).
FIXTURE_TIME_MS = 1_710_328_241_270
# A listing in the documented /products shape; the project holds no fixture for it.
PRODUCTS = [
    {
        "id": "BTC-USD",
        "base_currency": "BTC",
        "quote_currency": "USD",
        "quote_increment": "0.01",
        "base_increment": "0.00000001",
        "display_name": "BTC-USD",
        "status": "online",
        "trading_disabled": False,
        "cancel_only": False,
        "post_only": False,
        "limit_only": False,
    },
    {
        "id": "BTC-USDT",
        "base_currency": "BTC",
        "quote_currency": "USDT",
        "status": "online",
        "trading_disabled": False,
    },
    # An id that does not spell its pair: the listing, never the spelling, maps pairs to ids.
    {
        "id": "MATIC-USD",
        "base_currency": "POL",
        "quote_currency": "USD",
        "status": "online",
        "trading_disabled": False,
    },
    {
        "id": "ADA-BTC",
        "base_currency": "ADA",
        "quote_currency": "BTC",
        "status": "online",
        "trading_disabled": True,
    },
    {
        "id": "DOGE-BTC",
        "base_currency": "DOGE",
        "quote_currency": "BTC",
        "status": "delisted",
        "trading_disabled": True,
    },
    {"id": "BROKEN-USD", "status": "online"},  # malformed: no currencies
]


def fixture(name: str) -> Any:
    return json.loads((COINBASE / name).read_text())


def client_with(
    answer: Callable[[httpx.Request], httpx.Response],
) -> tuple[CoinbaseClient, list[httpx.Request]]:
    """A client whose transport is ``answer``, and the list of requests it received."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    http = httpx.Client(transport=httpx.MockTransport(record))
    return CoinbaseClient(http, "https://api.exchange.coinbase.test/"), seen


def client_answering(status: int, body: bytes | str) -> CoinbaseClient:
    content = body if isinstance(body, bytes) else body.encode()
    return client_with(lambda request: httpx.Response(status, content=content))[0]


def client_raising(exc: type[httpx.RequestError]) -> CoinbaseClient:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc("simulated", request=request)

    return client_with(fail)[0]


# --- parse_ticker --------------------------------------------------------------------------------------
def test_fixture_ticker_and_stats_parse_to_the_contract_fields() -> None:
    # Given the documented ticker and stats bodies (the stats fixture is another product's, so the change
    # is large, but the arithmetic is what is checked)
    ticker_raw, stats_raw = fixture("ticker_BTC-USDT.json"), fixture("stats_example.json")

    # When they are parsed for the pair the listing maps to BTC-USDT
    fetched_at = FIXTURE_TIME_MS + 45_000  # the last trade was 45 s before the request
    ticker = parse_ticker(ticker_raw, stats_raw, "BTC/USDT", product_id="BTC-USDT", fetched_at=fetched_at)

    # Then every field is the documented value, or derived from it as the contract says
    assert ticker.pair == "BTC/USDT"
    assert ticker.price == 73367.8
    assert ticker.volume == 1207.50668151  # 24 h, base units
    assert ticker.quoteVolume == pytest.approx(1207.50668151 * 73367.8)  # estimated: Coinbase gives none
    # The figures are as of the request; the last trade's time would make a quiet pair look stale.
    assert ticker.timestamp == ticker.fetchedAt == fetched_at
    assert ticker.change24h == round((73367.8 - 197.97) / 197.97 * 100, 4) == 36960.0596
    # The stats' range, widened to the last price (the stats are kept for minutes between reads)
    assert (ticker.high24h, ticker.low24h) == (73367.8, 194.42)
    assert (ticker.exchange, ticker.symbol) == ("coinbase", "BTC-USDT")


def test_change_is_measured_from_the_rolling_open_and_rounded_to_four_places() -> None:
    stats_raw = fixture("stats_example.json") | {"open": "70000", "high": "74000", "low": "69000"}
    ticker = parse_ticker(
        fixture("ticker_BTC-USDT.json"),
        stats_raw,
        "BTC/USDT",
        product_id="BTC-USDT",
        fetched_at=FIXTURE_TIME_MS,
    )
    assert ticker.change24h == 4.8111  # (73367.8 - 70000) / 70000 * 100 = 4.81114...


@pytest.mark.parametrize(
    ("which", "field", "value"),
    [
        ("ticker", "price", None),  # None: the field is missing
        ("ticker", "volume", None),
        ("ticker", "time", None),
        ("ticker", "price", "seventy thousand"),
        ("ticker", "volume", [1]),
        ("ticker", "time", "yesterday"),
        ("ticker", "time", "2024-03-13T11:10:41.270099"),  # no zone: which time would it be?
        ("stats", "open", None),
        ("stats", "high", "n/a"),
        ("stats", "low", None),
    ],
)
def test_malformed_input_raises_value_error_naming_the_pair(which: str, field: str, value: Any) -> None:
    raws = {"ticker": fixture("ticker_BTC-USDT.json"), "stats": fixture("stats_example.json")}
    if value is None:
        del raws[which][field]
    else:
        raws[which][field] = value
    with pytest.raises(ValueError, match="BTC/USDT"):
        parse_ticker(
            raws["ticker"], raws["stats"], "BTC/USDT", product_id="BTC-USDT", fetched_at=FIXTURE_TIME_MS
        )


@pytest.mark.parametrize("stats_raw", [None, [], "stats"])
def test_stats_that_are_not_an_object_raise_value_error_naming_the_pair(stats_raw: Any) -> None:
    with pytest.raises(ValueError, match="BTC/USDT"):
        parse_ticker(
            fixture("ticker_BTC-USDT.json"),
            stats_raw,
            "BTC/USDT",
            product_id="BTC-USDT",
            fetched_at=FIXTURE_TIME_MS,
        )


@pytest.mark.parametrize(
    ("which", "field", "value", "reason"),
    [
        ("ticker", "price", "0", "price"),
        ("ticker", "price", "-1", "price"),
        ("ticker", "volume", "-5", "volume"),
        ("stats", "open", "0", "change24h"),
        ("stats", "high", "1", "high24h"),  # below low 194.42
    ],
)
def test_out_of_range_values_are_rejected_naming_the_field(
    which: str, field: str, value: str, reason: str
) -> None:
    raws = {"ticker": fixture("ticker_BTC-USDT.json"), "stats": fixture("stats_example.json")}
    raws[which][field] = value
    with pytest.raises(ValueError, match=reason):
        parse_ticker(
            raws["ticker"], raws["stats"], "BTC/USDT", product_id="BTC-USDT", fetched_at=FIXTURE_TIME_MS
        )


def test_a_quiet_pair_is_served_as_of_the_fetch_not_as_of_its_last_trade() -> None:
    # Given a pair whose last trade was two days before the request
    ticker_raw, stats_raw = fixture("ticker_BTC-USDT.json"), fixture("stats_example.json")
    fetched_at = FIXTURE_TIME_MS + 48 * 3_600_000

    # When it is parsed, it is neither refused as a day-old ticker nor dated back to that trade
    ticker = parse_ticker(ticker_raw, stats_raw, "BTC/USDT", product_id="BTC-USDT", fetched_at=fetched_at)
    assert ticker.timestamp == fetched_at


# --- the client --------------------------------------------------------------------------------------
def test_products_maps_pairs_to_ids_through_the_listing() -> None:
    client, seen = client_with(lambda request: httpx.Response(200, json=PRODUCTS))

    by_pair = client.products()

    assert seen[0].url.path == "/products"
    assert by_pair["BTC/USD"].symbol == "BTC-USD"
    assert by_pair["BTC/USDT"].symbol == "BTC-USDT"
    assert by_pair["POL/USD"].symbol == "MATIC-USD"
    assert "MATIC/USD" not in by_pair
    assert by_pair["BTC/USD"].status == "online"
    assert by_pair["ADA/BTC"].status == "trading_disabled"  # online, but not trading: not servable
    assert by_pair["DOGE/BTC"].status == "delisted"
    assert len(by_pair) == 5  # the malformed entry is skipped, not fatal


def test_ticker_and_stats_request_one_product_each() -> None:
    bodies = {
        "/products/BTC-USDT/ticker": fixture("ticker_BTC-USDT.json"),
        "/products/BTC-USDT/stats": fixture("stats_example.json"),
    }
    client, seen = client_with(lambda request: httpx.Response(200, json=bodies[request.url.path]))

    assert client.ticker("BTC-USDT") == fixture("ticker_BTC-USDT.json")
    assert client.stats("BTC-USDT") == fixture("stats_example.json")
    assert [request.url.path for request in seen] == list(bodies)
    assert client.name == "coinbase"


def test_a_product_id_cannot_reach_another_path() -> None:
    client, seen = client_with(lambda request: httpx.Response(200, json={}))
    client.ticker("../products")
    assert seen[0].url.raw_path == b"/products/..%2Fproducts/ticker"


def test_not_found_fixture_for_a_product_is_its_own_kind() -> None:
    client = client_answering(404, (COINBASE / "error_not_found.json").read_bytes())
    with pytest.raises(ExchangeError) as raised:
        client.ticker("NOPE-USD")
    assert (raised.value.kind, raised.value.status) == ("not_found", 404)
    assert "NOPE-USD" in str(raised.value) and "NotFound" in str(raised.value)


def test_404_for_the_listing_itself_is_an_http_4xx() -> None:
    client = client_answering(404, (COINBASE / "error_not_found.json").read_bytes())
    with pytest.raises(ExchangeError) as raised:
        client.products()
    assert raised.value.kind == "http_4xx"


def test_429_is_rate_limited_for_a_second_as_coinbase_sends_no_retry_after() -> None:
    client = client_answering(429, '{"message":"Public rate limit exceeded"}')
    with pytest.raises(RateLimitedError) as raised:
        client.stats("BTC-USD")
    assert (raised.value.kind, raised.value.status, raised.value.retry_after_s) == ("rate_limited", 429, 1)
    assert "Public rate limit exceeded" in str(raised.value)
    assert PUBLIC_RATE_LIMIT_PER_S == 10


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (500, '{"message":"Internal server error"}', "http_5xx"),
        (502, "<html>502 Bad Gateway</html>", "http_5xx"),
        (400, '{"message":"Invalid product_id"}', "http_4xx"),
        (200, "<html>not json</html>", "bad_body"),
        (200, "[]", "bad_body"),  # a ticker is an object
    ],
)
def test_failed_answers_are_counted_by_kind(status: int, body: str, kind: str) -> None:
    with pytest.raises(ExchangeError) as raised:
        client_answering(status, body).ticker("BTC-USD")
    assert raised.value.kind == kind


def test_a_listing_that_is_not_a_list_is_a_bad_body() -> None:
    with pytest.raises(ExchangeError) as raised:
        client_answering(200, '{"message":"ok"}').products()
    assert raised.value.kind == "bad_body"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [(httpx.ReadTimeout, "timeout"), (httpx.ConnectTimeout, "timeout"), (httpx.ConnectError, "network")],
)
def test_transport_failures_are_counted_by_kind(exc: type[httpx.RequestError], kind: str) -> None:
    with pytest.raises(ExchangeError) as raised:
        client_raising(exc).ticker("BTC-USD")
    assert raised.value.kind == kind
