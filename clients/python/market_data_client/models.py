"""What the service answers, as typed, frozen values: a price entry, a candle, a history answer.

Parsing is strict: a field missing or of the wrong type is a ``ResponseFormatError`` naming it, so a
change on the server shows up as one clear message rather than as a wrong number on a screen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from market_data_client.errors import ResponseFormatError

Source = Literal["cache", "last_known_good"]
CandleSource = Literal["samples", "exchange"]
SOURCES: tuple[Source, ...] = ("cache", "last_known_good")
CANDLE_SOURCES: tuple[CandleSource, ...] = ("samples", "exchange")


@dataclass(frozen=True, slots=True)
class PriceEntry:
    """One pair's price, field for field as ``GET /api/market-data/prices`` serves it (snake_case)."""

    pair: str
    price: float
    volume: float
    quote_volume: float
    timestamp: int  # ms, the exchange's own time for the ticker: what a price's age is measured from
    fetched_at: int  # ms, when the service's fetcher received it
    change_24h: float
    high_24h: float
    low_24h: float
    exchange: str
    symbol: str
    stale: bool  # the server's verdict when it answered
    source: Source
    sparkline: tuple[float | None, ...] | None = None


@dataclass(frozen=True, slots=True)
class Candle:
    time: int  # ms, the interval's start
    open: float
    high: float
    low: float
    close: float
    volume: float | None  # the exchange's own, where it gave one; never derived
    samples: int
    source: CandleSource
    first_at: int | None = None
    last_at: int | None = None


@dataclass(frozen=True, slots=True)
class Fallback:
    interval: str
    reason: str


@dataclass(frozen=True, slots=True)
class History:
    pair: str
    interval: str
    candles: tuple[Candle, ...]
    gaps: tuple[tuple[int, int], ...]  # [from, to) ms ranges with no data
    fallback: Fallback | None = None  # set while the cache is lost: hourly candles answer instead


# --- strict field readers ----------------------------------------------------------------------------


def _field(data: dict[str, Any], name: str, where: str) -> Any:
    if name not in data:
        raise ResponseFormatError(f"{where}.{name}", "missing")
    return data[name]


def _number(data: dict[str, Any], name: str, where: str) -> float:
    value = _field(data, name, where)
    # bool is an int to Python, never a number to JSON
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ResponseFormatError(f"{where}.{name}", f"expected a finite number, got {value!r}")
    return float(value)


def _optional_number(data: dict[str, Any], name: str, where: str) -> float | None:
    return None if data.get(name) is None else _number(data, name, where)


def _integer(data: dict[str, Any], name: str, where: str) -> int:
    value = _field(data, name, where)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ResponseFormatError(f"{where}.{name}", f"expected an integer, got {value!r}")
    return value


def _optional_integer(data: dict[str, Any], name: str, where: str) -> int | None:
    return None if data.get(name) is None else _integer(data, name, where)


def _string(data: dict[str, Any], name: str, where: str) -> str:
    value = _field(data, name, where)
    if not isinstance(value, str):
        raise ResponseFormatError(f"{where}.{name}", f"expected a string, got {value!r}")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ResponseFormatError(where, f"expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ResponseFormatError(where, f"expected a list, got {type(value).__name__}")
    return value


# --- parsers -----------------------------------------------------------------------------------------


def parse_entry(raw: Any, where: str = "entry") -> PriceEntry:
    data = _object(raw, where)
    stale = _field(data, "stale", where)
    if not isinstance(stale, bool):
        raise ResponseFormatError(f"{where}.stale", f"expected true or false, got {stale!r}")
    source = _string(data, "source", where)
    if source not in SOURCES:
        raise ResponseFormatError(f"{where}.source", f"expected one of {', '.join(SOURCES)}, got {source!r}")
    sparkline = None
    if data.get("sparkline") is not None:
        points = _list(data["sparkline"], f"{where}.sparkline")
        sparkline = tuple(
            None if point is None else _number({"point": point}, "point", f"{where}.sparkline[{index}]")
            for index, point in enumerate(points)
        )
    return PriceEntry(
        pair=_string(data, "pair", where),
        price=_number(data, "price", where),
        volume=_number(data, "volume", where),
        quote_volume=_number(data, "quoteVolume", where),
        timestamp=_integer(data, "timestamp", where),
        fetched_at=_integer(data, "fetchedAt", where),
        change_24h=_number(data, "change24h", where),
        high_24h=_number(data, "high24h", where),
        low_24h=_number(data, "low24h", where),
        exchange=_string(data, "exchange", where),
        symbol=_string(data, "symbol", where),
        stale=stale,
        source=source,  # type: ignore[arg-type]  # checked against SOURCES above
        sparkline=sparkline,
    )


def parse_prices(raw: Any, where: str = "prices") -> dict[str, PriceEntry]:
    """``{pair: entry}``, each entry's own ``pair`` checked against its key."""
    entries: dict[str, PriceEntry] = {}
    for pair, value in _object(raw, where).items():
        entry = parse_entry(value, f"{where}[{pair!r}]")
        if entry.pair != pair:
            raise ResponseFormatError(f"{where}[{pair!r}].pair", f"names {entry.pair!r}, not its key")
        entries[pair] = entry
    return entries


def parse_candle(raw: Any, where: str = "candle") -> Candle:
    data = _object(raw, where)
    source = _string(data, "source", where)
    if source not in CANDLE_SOURCES:
        raise ResponseFormatError(f"{where}.source", f"expected samples or exchange, got {source!r}")
    return Candle(
        time=_integer(data, "time", where),
        open=_number(data, "open", where),
        high=_number(data, "high", where),
        low=_number(data, "low", where),
        close=_number(data, "close", where),
        volume=_optional_number(data, "volume", where),
        samples=_integer(data, "samples", where),
        source=source,  # type: ignore[arg-type]  # checked against CANDLE_SOURCES above
        first_at=_optional_integer(data, "firstAt", where),
        last_at=_optional_integer(data, "lastAt", where),
    )


def parse_history(raw: Any, where: str = "history") -> History:
    data = _object(raw, where)
    candles = tuple(
        parse_candle(candle, f"{where}.candles[{index}]")
        for index, candle in enumerate(_list(_field(data, "candles", where), f"{where}.candles"))
    )
    gaps: list[tuple[int, int]] = []
    for index, gap in enumerate(_list(_field(data, "gaps", where), f"{where}.gaps")):
        bounds = _list(gap, f"{where}.gaps[{index}]")
        if len(bounds) != 2:
            raise ResponseFormatError(f"{where}.gaps[{index}]", f"expected [from, to], got {bounds!r}")
        named = {"from": bounds[0], "to": bounds[1]}
        gaps.append((_integer(named, "from", f"{where}.gaps[{index}]"), _integer(named, "to", where)))
    fallback = None
    if data.get("fallback") is not None:
        raw_fallback = _object(data["fallback"], f"{where}.fallback")
        fallback = Fallback(
            _string(raw_fallback, "interval", f"{where}.fallback"),
            _string(raw_fallback, "reason", f"{where}.fallback"),
        )
    return History(
        pair=_string(data, "pair", where),
        interval=_string(data, "interval", where),
        candles=candles,
        gaps=tuple(gaps),
        fallback=fallback,
    )


def entry_to_api(entry: PriceEntry) -> dict[str, Any]:
    """The entry with the API's own field names, as ``GET /prices`` serves it."""
    api = {
        "pair": entry.pair, "price": entry.price, "volume": entry.volume, "quoteVolume": entry.quote_volume,
        "timestamp": entry.timestamp, "fetchedAt": entry.fetched_at, "change24h": entry.change_24h,
        "high24h": entry.high_24h, "low24h": entry.low_24h, "exchange": entry.exchange,
        "symbol": entry.symbol, "stale": entry.stale, "source": entry.source,
    }  # fmt: skip
    if entry.sparkline is not None:
        api["sparkline"] = list(entry.sparkline)
    return api


def candle_to_api(candle: Candle) -> dict[str, Any]:
    return {
        "time": candle.time, "open": candle.open, "high": candle.high, "low": candle.low,
        "close": candle.close, "volume": candle.volume, "samples": candle.samples, "source": candle.source,
        "firstAt": candle.first_at, "lastAt": candle.last_at,
    }  # fmt: skip
