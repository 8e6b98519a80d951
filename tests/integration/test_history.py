"""GET /history and prices with sparklines, through the prices handler, against real parts: candles
built by the fetcher's candle consumer in a real redis-server, hourly ones in moto."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fetcher.candles import CandleRecorder
from fetcher.deps import Fetcher
from fetcher.loop import LoopSummary, run_slot
from fetcher.tick import WrittenTick
from local_stack.lambda_context import LocalLambdaContext
from market_data import cache, store
from market_data.cache.keys import WRITTEN_SLOT
from market_data.candles import HOUR_MS, MINUTE_MS, SPARKLINE_POINTS, SPARKLINE_STEP_MS, Candle
from market_data.config import get_settings
from market_data.models import Ticker
from prices_api.handler import lambda_handler
from tests.support import load_event

INTERVAL_MS = 2000
PER_MINUTE = MINUTE_MS // INTERVAL_MS
CANDLE_FIELDS = ["time", "open", "high", "low", "close", "volume", "samples", "source", "firstAt", "lastAt"]


def get(path: str, **parameters: str) -> tuple[int, Any]:
    event = copy.deepcopy(load_event("history_get.json" if path == "history" else "prices_get.json"))
    event["queryStringParameters"] = parameters or None
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in parameters.items())
    answer = lambda_handler(event, LocalLambdaContext("prices", 6))
    return answer["statusCode"], json.loads(answer["body"])


def now() -> int:
    return int(time.time() * 1000)


def ticker(pair: str, price: float, at: int) -> Ticker:
    return Ticker(
        pair=pair, price=price, volume=1.0, quoteVolume=price, timestamp=at, fetchedAt=at, change24h=0.0,
        high24h=price * 2, low24h=price / 2, exchange="binance", symbol=pair.replace("/", ""),
    )  # fmt: skip


@pytest.fixture
def recorder(service_env: dict[str, str]) -> Iterator[CandleRecorder]:
    settings = get_settings()
    recording = CandleRecorder(settings, cache.get_client(settings), store.get_table(settings), owner="test")
    yield recording
    recording.close()


def feed(
    recorder: CandleRecorder, minutes: list[int], price: Callable[[int], float], pair: str = "BTC/USDT"
) -> None:
    """Every slot of the given minutes (starts, ms), as the tick writes them."""
    client = cache.get_client(get_settings())
    for start in minutes:
        for slot in range(start // INTERVAL_MS, (start + MINUTE_MS) // INTERVAL_MS):
            client.set(WRITTEN_SLOT, slot)
            tick = {pair: ticker(pair, price(slot * INTERVAL_MS), slot * INTERVAL_MS - 50)}
            recorder(WrittenTick(slot, tick, [pair], {}, cache_written=True))


def test_a_day_of_minutes_as_the_ticks_built_them_with_gaps_and_the_open_minute(
    make_container: Callable[..., Fetcher],
) -> None:
    container = make_container()
    open_minute = now() // MINUTE_MS * MINUTE_MS
    first = open_minute - 3 * MINUTE_MS
    # Two whole minutes, then nothing for the third, then the minute now open (its first slot).
    slots = [*range(first // INTERVAL_MS, first // INTERVAL_MS + 2 * PER_MINUTE), open_minute // INTERVAL_MS]
    for slot in slots:
        run_slot(container, slot, "history", LoopSummary())

    status, body = get("history", pair="btc/usdt", interval="1m", **{"from": str(first - 5 * MINUTE_MS)})
    assert status == 200 and (body["pair"], body["interval"]) == ("BTC/USDT", "1m")
    times = [c["time"] for c in body["candles"]]
    assert times == [first, first + MINUTE_MS, open_minute]
    assert [list(c) for c in body["candles"]] == [CANDLE_FIELDS] * 3
    assert [c["samples"] for c in body["candles"][:2]] == [PER_MINUTE, PER_MINUTE]
    assert all(c["volume"] is None and c["source"] == "samples" for c in body["candles"])
    # Before the first candle and the missed minute are gaps; the minute now open is none.
    assert body["gaps"] == [[first - 5 * MINUTE_MS, first], [first + 2 * MINUTE_MS, open_minute]]
    container.close()


def test_longer_intervals_roll_up_the_minutes_and_name_the_empty_ones(recorder: CandleRecorder) -> None:
    start = now() // HOUR_MS * HOUR_MS - 2 * HOUR_MS
    minutes = [start + i * MINUTE_MS for i in range(15) if i != 7] + [start + 30 * MINUTE_MS]
    feed(recorder, minutes, lambda at: 100.0 + (at - start) / MINUTE_MS)
    feed(recorder, [start + 31 * MINUTE_MS], lambda at: 1.0)  # closes the minute before

    status, body = get(
        "history",
        pair="BTC/USDT",
        interval="5m",
        **{"from": str(start), "to": str(start + 35 * MINUTE_MS - 1)},
    )
    assert status == 200
    candles = body["candles"]
    assert [c["time"] for c in candles] == [
        start,
        start + 5 * MINUTE_MS,
        start + 10 * MINUTE_MS,
        start + 30 * MINUTE_MS,
    ]
    assert [c["samples"] for c in candles] == [5 * PER_MINUTE, 4 * PER_MINUTE, 5 * PER_MINUTE, 2 * PER_MINUTE]
    assert candles[1]["open"] == 105.0 and candles[1]["low"] == 105.0
    assert body["gaps"] == [[start + 15 * MINUTE_MS, start + 30 * MINUTE_MS]]
    status, body = get(
        "history", pair="BTC/USDT", interval="15m", **{"from": str(start), "to": str(start + 44 * MINUTE_MS)}
    )
    assert [c["samples"] for c in body["candles"]] == [14 * PER_MINUTE, 2 * PER_MINUTE]
    assert body["candles"][0]["close"] == 114.0 + (PER_MINUTE - 1) * INTERVAL_MS / MINUTE_MS
    assert body["gaps"] == [[start + 15 * MINUTE_MS, start + 30 * MINUTE_MS]]


def test_hours_come_from_dynamodb_and_the_open_hour_from_the_cache(recorder: CandleRecorder) -> None:
    hour = now() // HOUR_MS * HOUR_MS
    earlier = hour - 5 * HOUR_MS
    exchange_hour = Candle(earlier, 1, 3, 0.5, 2, 9.5, 0, "exchange")
    store.write_hourly_candles(store.get_table(get_settings()), {"BTC/USDT": exchange_hour})
    feed(recorder, [hour], lambda at: 50.0)

    status, body = get("history", pair="BTC/USDT", interval="1h", **{"from": str(earlier)})
    assert status == 200
    assert [(c["time"], c["source"], c["volume"]) for c in body["candles"]] == [
        (earlier, "exchange", 9.5),
        (hour, "samples", None),
    ]
    assert body["gaps"] == [[earlier + HOUR_MS, hour]]


@pytest.mark.parametrize(
    ("parameters", "names"),
    [
        ({}, "missing pair"),
        ({"pair": "BTCUSDT"}, "'BTCUSDT'"),
        ({"pair": "BTC/USDT", "interval": "2m"}, "invalid interval '2m'"),
        ({"pair": "BTC/USDT", "limit": "0"}, "invalid limit 0"),
        ({"pair": "BTC/USDT", "limit": "1501"}, "invalid limit 1501"),
        ({"pair": "BTC/USDT", "limit": "ten"}, "invalid limit 'ten'"),
        ({"pair": "BTC/USDT", "from": "yesterday"}, "invalid from 'yesterday'"),
        ({"pair": "BTC/USDT", "from": "200", "to": "100"}, "invalid from 200: after to 100"),
        ({"pair": "BTC/USDT", "interval": "1m", "from": "0", "to": str(25 * HOUR_MS)}, "reach back 24 h"),
        (
            {"pair": "BTC/USDT", "interval": "1h", "from": "0", "to": str(91 * 24 * HOUR_MS)},
            "reach back 2160 h",
        ),
        ({"pair": "BTC/USDT", "pairs": "BTC/USDT"}, "unknown query parameter 'pairs'"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(
    service_env: dict[str, str], parameters: dict[str, str], names: str
) -> None:
    status, body = get("history", **parameters)
    assert status == 400, body
    assert names in body["message"]


def test_a_pair_never_listed_is_a_404_and_a_listed_one_without_candles_is_all_gap(
    make_container: Callable[..., Fetcher],
) -> None:
    container = make_container()
    run_slot(container, now() // INTERVAL_MS - 40, "history", LoopSummary())  # lists BTC/USDT and ETH/USDT
    status, body = get("history", pair="DOGE/USDT")
    assert (status, body["error"]) == (404, "pair_not_listed") and "DOGE/USDT" in body["message"]
    frm = now() // HOUR_MS * HOUR_MS - 2 * HOUR_MS
    status, body = get(
        "history", pair="ETH/USDT", interval="15m", **{"from": str(frm), "to": str(frm + 29 * MINUTE_MS)}
    )
    assert (status, body["candles"], body["gaps"]) == (200, [], [[frm, frm + 30 * MINUTE_MS]])
    container.close()


def test_with_the_cache_lost_history_comes_from_the_hourly_candles_and_says_so(
    recorder: CandleRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    hour = now() // HOUR_MS * HOUR_MS - 2 * HOUR_MS
    table = store.get_table(get_settings())
    store.write_hourly_candles(table, {"BTC/USDT": Candle(hour, 1, 2, 0.5, 1.5, None, 900, "samples")})
    store.seed_registry(table, ["BTC/USDT"], now_ms=now())
    store.write_last_known_good(table, [ticker("BTC/USDT", 1.5, now())])
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    get_settings.cache_clear()
    cache.reset_client()

    window = {"from": str(hour - HOUR_MS), "to": str(hour + HOUR_MS)}
    status, body = get("history", pair="BTC/USDT", interval="1m", **window)
    assert status == 200
    assert body["interval"] == "1h" and body["fallback"]["interval"] == "1h"
    assert "cache unavailable" in body["fallback"]["reason"]
    assert [c["time"] for c in body["candles"]] == [hour]
    assert body["gaps"] == [[hour - HOUR_MS, hour], [hour + HOUR_MS, hour + 2 * HOUR_MS]]
    # Prices still come (from last known good); their sparklines need the cache, and say so.
    status, body = get("prices", pairs="BTC/USDT", include="sparkline")
    assert status == 200 and body["BTC/USDT"]["sparkline"] is None


def test_sparklines_are_a_days_15_minute_closes_ending_with_the_price(
    make_container: Callable[..., Fetcher], recorder: CandleRecorder
) -> None:
    step_now = now() // SPARKLINE_STEP_MS * SPARKLINE_STEP_MS
    # Minutes in three earlier 15-minute intervals, a day ago and an hour ago; a price per minute.
    earlier = [step_now - 95 * SPARKLINE_STEP_MS + 3 * MINUTE_MS, step_now - 4 * SPARKLINE_STEP_MS,
               step_now - 4 * SPARKLINE_STEP_MS + MINUTE_MS, step_now - 2 * SPARKLINE_STEP_MS]  # fmt: skip
    feed(recorder, earlier, lambda at: float(at // MINUTE_MS % 1000))
    container = make_container()
    run_slot(
        container, now() // INTERVAL_MS, "sparkline", LoopSummary()
    )  # the prices, and closes the last minute

    status, body = get("prices", pairs="BTC/USDT,ETH/USDT", include="sparkline")
    assert status == 200
    line = body["BTC/USDT"]["sparkline"]
    assert len(line) == SPARKLINE_POINTS
    assert line[-1] == body["BTC/USDT"]["price"]
    closes = {i: point for i, point in enumerate(line) if point is not None}
    last_of = lambda minute: float((minute // MINUTE_MS) % 1000)  # noqa: E731
    assert closes == {
        0: last_of(earlier[0]),
        91: last_of(earlier[2]),
        93: last_of(earlier[3]),
        95: line[-1],
    }
    assert body["ETH/USDT"]["sparkline"] == [None] * 95 + [body["ETH/USDT"]["price"]]
    status, plain = get("prices", pairs="BTC/USDT")
    assert status == 200 and "sparkline" not in plain["BTC/USDT"]
    status, bad = get("prices", pairs="BTC/USDT", include="candles")
    assert (status, bad["error"]) == (400, "invalid_include") and "'candles'" in bad["message"]
    container.close()


def test_with_the_cache_and_dynamodb_both_lost_history_is_a_503_not_a_500(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("DYNAMODB_ENDPOINT_URL", "http://127.0.0.1:1")
    get_settings.cache_clear()
    cache.reset_client()
    store.reset_table()
    status, body = get("history", pair="BTC/USDT")
    assert (status, body["error"]) == (503, "unavailable")
