"""The synchronous client: one ``httpx.Client``, reads with revalidation and typed errors."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx

from market_data_client.api import (
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT,
    HEALTH_PATH,
    HISTORY_PATH,
    PRICES_PATH,
    PricesAnswer,
    health_answer,
    history_answer,
    history_params,
    normalise_pairs,
    prices_answer,
    prices_request,
)
from market_data_client.errors import TransportError
from market_data_client.models import History


def now_ms() -> float:
    return time.time() * 1000


class PricesClient:
    """``with PricesClient("http://127.0.0.1:3000") as client: client.prices(["BTC/USDT"])``.

    The last answer for each set of pairs is kept, and its ETag sent as ``If-None-Match``: an
    unchanged slot is then a 304 with no body, answered here with the kept entries (their ages grow
    with time, as ages are computed when shown)."""

    def __init__(
        self, base_url: str = DEFAULT_BASE_URL, *, timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, transport=transport,
            headers={"User-Agent": "market-data-client/python"},
        )  # fmt: skip
        self._last: dict[tuple[str, ...] | None, PricesAnswer] = {}

    def __enter__(self) -> PricesClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _get(
        self, path: str, params: dict[str, str], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        try:
            return self._http.get(path, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise TransportError(f"{self.base_url}{path}: {type(exc).__name__}: {exc}") from exc

    def prices(self, pairs: Iterable[str] | None = None) -> PricesAnswer:
        """The pairs' prices (every listed pair when None). Raises UnavailableError (503, with
        ``retry_after_s``), NotListedError (404), InvalidRequestError (400), ServerError,
        TransportError."""
        key = normalise_pairs(pairs) if pairs is not None else None
        previous = self._last.get(key)
        params, headers = prices_request(key, previous)
        sent = now_ms()
        response = self._get(PRICES_PATH, params, headers)
        answer = prices_answer(response, sent, now_ms(), previous)
        self._last[key] = answer
        return answer

    def history(
        self, pair: str, interval: str = "1m", *, from_ms: int | None = None, to_ms: int | None = None,
        limit: int | None = None,
    ) -> History:  # fmt: skip
        params = history_params(pair, interval, from_ms, to_ms, limit)
        return history_answer(self._get(HISTORY_PATH, params))

    def health(self) -> dict[str, Any]:
        return health_answer(self._get(HEALTH_PATH, {}))
