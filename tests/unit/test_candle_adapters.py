"""Each adapter's candle request read against the exchange's documented candle payload in
../shared/fixtures: what it asks, how it reads the rows, and what it refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fetcher.exchanges.base import ExchangeError
from fetcher.exchanges.binance import BinanceClient, request_weight
from fetcher.exchanges.coinbase import CoinbaseClient
from fetcher.exchanges.kraken import KrakenClient
from tests.support import FIXTURES, answering_http

MINUTE, HOUR = 60_000, 3_600_000


def fixture(path: str) -> Any:
    return json.loads((FIXTURES / path).read_text())


def test_binance_klines_ask_one_request_of_1000_and_weigh_2() -> None:
    row = fixture("binance/klines_example.json")[0]
    start = row[0] - row[0] % MINUTE
    minute_row = [start, *row[1:6], start + MINUTE - 1, *row[7:]]
    http, seen = answering_http(200, json.dumps([minute_row]))
    [candle] = BinanceClient(http, "https://api.binance.test").klines(
        "BNBBTC", MINUTE, start, start + 1000 * MINUTE
    )
    assert (candle.time, candle.open, candle.high, candle.low, candle.close) == (
        start, 0.0163479, 0.8, 0.015758, 0.015771,
    )  # fmt: skip
    assert (candle.volume, candle.samples, candle.source) == (148976.11427815, 0, "exchange")
    params = seen[0].url.params
    assert seen[0].url.path == "/api/v3/klines"
    assert (params["symbol"], params["interval"], params["limit"]) == ("BNBBTC", "1m", "1000")
    assert (int(params["startTime"]), int(params["endTime"])) == (start, start + 1000 * MINUTE - 1)
    assert request_weight(seen[0]) == 2


def test_coinbase_candles_newest_first_come_back_oldest_first() -> None:
    rows = fixture("coinbase/candles_example.json")  # [time s, low, high, open, close, volume]
    http, seen = answering_http(200, json.dumps(rows))
    start = min(r[0] for r in rows) * 1000 - 60_000
    candles = CoinbaseClient(http, "https://api.coinbase.test").candles(
        "BTC-USD", MINUTE, start, start + 300 * MINUTE
    )
    assert [c.time for c in candles] == sorted(r[0] * 1000 for r in rows)
    newest = candles[-1]
    assert (newest.open, newest.high, newest.low, newest.close, newest.volume) == (0.35, 4.2, 0.32, 4.2, 12.3)
    assert seen[0].url.path == "/products/BTC-USD/candles"
    assert seen[0].url.params["granularity"] == "60"
    assert seen[0].url.params["start"].endswith("Z") and seen[0].url.params["end"].endswith("Z")


def test_kraken_ohlc_drops_the_interval_still_open_and_reads_strings() -> None:
    body = fixture("kraken/ohlc_XBTUSD.json")
    rows = body["result"]["XXBTZUSD"]
    http, seen = answering_http(200, json.dumps(body))
    start = rows[0][0] * 1000
    candles = KrakenClient(http, "https://api.kraken.test").candles(
        "XXBTZUSD", MINUTE, start, start + 720 * MINUTE
    )
    # Both documented rows are long closed: both read, open/high/low/close from strings, volume too.
    assert [(c.time, c.open, c.high, c.low, c.close, c.volume) for c in candles] == [
        (1688671200000, 30306.1, 30306.2, 30305.7, 30305.7, 3.39243896),
        (1688671260000, 30304.5, 30304.5, 30300.0, 30300.0, 4.42996871),
    ]
    assert seen[0].url.params["interval"] == "1" and seen[0].url.params["since"] == str(rows[0][0] - 60)


@pytest.mark.parametrize(
    "row",
    [
        ["x", "1", "2", "0.5", "1.5", "3"],  # time not a number
        [1688671200000, "1", "0.9", "0.5", "1.5", "3"],  # high below close
        [1688671200000, "0", "2", "0", "1", "3"],  # not a price
        [1688671200000, "1", "2"],  # too short
    ],
)
def test_a_malformed_kline_is_a_bad_body_naming_the_symbol(row: list[Any]) -> None:
    http, _ = answering_http(200, json.dumps([row]))
    with pytest.raises(ExchangeError, match="BNBBTC") as raised:
        BinanceClient(http, "https://api.binance.test").klines("BNBBTC", MINUTE, 0, 2 * 10**12)
    assert raised.value.kind == "bad_body"
