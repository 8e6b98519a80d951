"""The history route's answer, typed for the API description (prices_api.history builds it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class CandleEntry(BaseModel):
    time: int = Field(description="The interval's start, ms since epoch")
    open: float
    high: float
    low: float
    close: float
    volume: float | None = Field(
        description="Base volume as the exchange reported it for the interval; null for candles built "
        "from samples (never derived from rolling 24 h figures), and for a roll-up missing any minute's"
    )
    samples: int = Field(description="Served prices the candle gathers (0 for an exchange's own candle)")
    source: Literal["samples", "exchange"] = Field(
        description="samples: built from the prices this service served; exchange: the exchange's own candle"
    )
    firstAt: int | None = Field(
        description="The exchange's time of the first sample (null for an exchange candle)"
    )
    lastAt: int | None = Field(
        description="The exchange's time of the last sample (null for an exchange candle)"
    )


class Fallback(BaseModel):
    interval: Literal["1h"]
    reason: str


class HistoryBody(BaseModel):
    pair: str
    interval: Literal["1m", "5m", "15m", "1h"] = Field(
        description="The candles' interval: the one asked for, or 1h while the cache is lost (see fallback)"
    )
    candles: list[CandleEntry] = Field(description="Oldest first; an interval without data has none")
    gaps: list[list[int]] = Field(
        description="[from, to) ranges, ms, of the intervals in the range that have no data (the interval "
        "now open is never one)"
    )
    fallback: Fallback | None = Field(
        default=None,
        description="Present when the cache is lost: the answer comes from the hourly candles in DynamoDB",
    )
