"""Typed failures. Every one carries a message naming what went wrong; the server's own JSON error
(``{"error", "message", ...}``) is kept whole on ``ApiError.body``."""

from __future__ import annotations

from typing import Any


class MarketDataError(Exception):
    """Anything this client raises on purpose."""


class InvalidPairError(MarketDataError, ValueError):
    """A pair refused before any request: not ``BASE/QUOTE`` with letters and digits."""

    def __init__(self, pair: str) -> None:
        super().__init__(f"invalid pair {pair!r}: expected BASE/QUOTE with letters and digits, e.g. BTC/USDT")
        self.pair = pair


class ResponseFormatError(MarketDataError, ValueError):
    """An answer without the documented shape; ``field`` is the path of the bad value."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"unexpected answer: {field}: {problem}")
        self.field = field


class TransportError(MarketDataError):
    """No answer: the connection failed or timed out."""


class ApiError(MarketDataError):
    """An answer with an error status. ``error`` is the server's code (``invalid_pairs``, ...)."""

    def __init__(
        self, status_code: int, error: str, message: str, body: dict[str, Any] | None = None,
        retry_after_s: float | None = None, date: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(f"{status_code} {error}: {message}")
        self.status_code = status_code
        self.error = error
        self.message = message
        self.body = body or {}
        self.retry_after_s = retry_after_s
        self.date = date  # the answer's Date header: it still tells the server's clock


class InvalidRequestError(ApiError):
    """400: the message names the bad value."""


class NotListedError(ApiError):
    """404: none of the pairs is listed, and retrying brings nothing (``not_listed``: pair -> reason)."""

    @property
    def not_listed(self) -> dict[str, str]:
        value = self.body.get("notListed")
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


class UnavailableError(ApiError):
    """503: nothing to serve yet (a cold start, a cold cache); ``retry_after_s`` says when to ask again."""

    @property
    def unavailable_pairs(self) -> list[str]:
        value = self.body.get("unavailablePairs")
        return [str(pair) for pair in value] if isinstance(value, list) else []


class ServerError(ApiError):
    """Any other 5xx, or a status this client does not expect."""
