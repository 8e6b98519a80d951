"""What every exchange adapter shares: its errors, as operators count them, and its listing.

Adapters (``binance.py``, ``coinbase.py``, ``kraken.py``) speak one protocol each and map it to
these; only the fetcher imports them, and the read path never reaches an exchange.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import orjson


class ExchangeError(Exception):
    """A failed exchange call; ``kind`` is what operators count (timeout, http_5xx, bad_body, ...)."""

    def __init__(self, kind: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


class RateLimitedError(ExchangeError):
    """429 (too much weight) or 418 (IP banned): no call may be made before ``retry_after_s``."""

    def __init__(self, status: int, retry_after_s: int, message: str) -> None:
        super().__init__("rate_limited" if status == 429 else "banned", message, status=status)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class SymbolInfo:
    symbol: str
    base: str
    quote: str
    status: str

    @property
    def pair(self) -> str:
        return f"{self.base}/{self.quote}"


@dataclass(frozen=True)
class ExchangeInfo:
    by_pair: dict[str, SymbolInfo]
    weight_limit_1m: int | None


def json_body(response: httpx.Response, path: str) -> Any:
    """The answer's JSON. A body that is not JSON is a proxy's error page on a 5xx, else a bad body."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        status = response.status_code
        kind = "http_5xx" if status >= 500 else "bad_body"
        raise ExchangeError(kind, f"{path}: HTTP {status}, body is not JSON", status=status) from exc
