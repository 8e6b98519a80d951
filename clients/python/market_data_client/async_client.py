"""The asyncio client: one ``httpx.AsyncClient``, reads with revalidation and typed errors."""

from __future__ import annotations

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
from market_data_client.client import now_ms
from market_data_client.errors import TransportError
from market_data_client.models import History


class AsyncPricesClient:
    """``async with AsyncPricesClient("http://127.0.0.1:3000") as client: await client.prices(["BTC/USDT"])``.

    The last answer for each set of pairs is kept, and its ETag sent as ``If-None-Match``: an
    unchanged slot is then a 304 with no body, answered here with the kept entries (their ages grow
    with time, as ages are computed when shown)."""

    def __init__(
        self, base_url: str = DEFAULT_BASE_URL, *, timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, transport=transport,
            headers={"User-Agent": "market-data-client/python"},
        )  # fmt: skip
        self._last: dict[tuple[str, ...] | None, PricesAnswer] = {}

    async def __aenter__(self) -> AsyncPricesClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get(
        self, path: str, params: dict[str, str], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        try:
            return await self._http.get(path, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise TransportError(f"{self.base_url}{path}: {type(exc).__name__}: {exc}") from exc

    async def prices(self, pairs: Iterable[str] | None = None) -> PricesAnswer:
        """The pairs' prices (every listed pair when None). Raises UnavailableError (503, with
        ``retry_after_s``), NotListedError (404), InvalidRequestError (400), ServerError,
        TransportError."""
        key = normalise_pairs(pairs) if pairs is not None else None
        previous = self._last.get(key)
        params, headers = prices_request(key, previous)
        sent = now_ms()
        response = await self._get(PRICES_PATH, params, headers)
        answer = prices_answer(response, sent, now_ms(), previous)
        self._last[key] = answer
        return answer

    async def history(
        self, pair: str, interval: str = "1m", *, from_ms: int | None = None, to_ms: int | None = None,
        limit: int | None = None,
    ) -> History:  # fmt: skip
        params = history_params(pair, interval, from_ms, to_ms, limit)
        return history_answer(await self._get(HISTORY_PATH, params))

    async def health(self) -> dict[str, Any]:
        return health_answer(await self._get(HEALTH_PATH, {}))
