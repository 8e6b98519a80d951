"""The HTTP API's requests and answers, shared by the sync and the asyncio client: what to send,
and what an answer means (entries, missing pairs, ETag, Retry-After, typed errors). No I/O here."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from market_data_client.errors import (
    ApiError,
    InvalidPairError,
    InvalidRequestError,
    NotListedError,
    ResponseFormatError,
    ServerError,
    UnavailableError,
)
from market_data_client.models import History, PriceEntry, parse_history, parse_prices

DEFAULT_BASE_URL = "http://127.0.0.1:3000"
PRICES_PATH = "/api/market-data/prices"
HISTORY_PATH = "/api/market-data/history"
HEALTH_PATH = "/api/market-data/health"
INTERVALS = ("1m", "5m", "15m", "1h")
MAX_PAIRS = 100
# The server's own rule (docs/api.md): letters and digits either side of one slash.
_PAIR = re.compile(r"^[A-Z0-9]+/[A-Z0-9]+$")
# A read answers from the cache within milliseconds; seconds mean something is wrong, and a poller
# is better off trying again on its schedule than waiting.
DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=3.0)


def normalise_pairs(pairs: Iterable[str]) -> tuple[str, ...]:
    """Upper case, trimmed, duplicates collapsed, order kept; a bad one is an InvalidPairError."""
    seen: dict[str, None] = {}
    for raw in pairs:
        pair = raw.strip().upper()
        if not _PAIR.match(pair):
            raise InvalidPairError(raw)
        seen.setdefault(pair)
    if len(seen) > MAX_PAIRS:
        raise InvalidRequestError(400, "too_many_pairs", f"{len(seen)} pairs: at most {MAX_PAIRS} at once")
    return tuple(seen)


def stream_url_for(base_url: str) -> str:
    """The local stack's WebSocket beside its HTTP API: same host and port, ``ws``, path ``/ws``.
    On AWS the stream has its own URL (the stack's ``StreamUrl``): pass it instead."""
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "/ws", "", ""))


@dataclass(frozen=True, slots=True)
class PricesAnswer:
    """One prices read. A 304 carries the entries of the answer it revalidated."""

    status_code: int  # 200, 206 or 304
    entries: dict[str, PriceEntry]
    missing: tuple[str, ...]  # X-Missing-Pairs: every pair asked and not served
    not_listed: tuple[str, ...]  # X-Not-Listed-Pairs: those of them that will not come
    etag: str | None
    date: str | None  # the Date header, for the clock-skew estimate
    sent_ms: float  # this machine's clock when the request left and when the answer came
    received_ms: float
    max_age_s: int | None = None

    @property
    def not_modified(self) -> bool:
        return self.status_code == 304


def _header_list(response: httpx.Response, name: str) -> tuple[str, ...]:
    return tuple(pair.strip() for pair in response.headers.get(name, "").split(",") if pair.strip())


def _max_age(response: httpx.Response) -> int | None:
    match = re.search(r"max-age=(\d+)", response.headers.get("cache-control", ""))
    return int(match.group(1)) if match else None


def retry_after_s(response: httpx.Response) -> float | None:
    """Retry-After in seconds (the service sends seconds; an HTTP date is not expected from it)."""
    value = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResponseFormatError("body", f"not JSON ({response.status_code}): {exc}") from None


def error_for(response: httpx.Response) -> ApiError:
    """The typed error for an answer with an error status, the server's JSON error kept."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        body = {"message": response.text[:200]}
    code = str(body.get("error") or response.reason_phrase or "error")
    message = str(body.get("message") or response.text[:200] or response.reason_phrase)
    status = response.status_code
    kind: type[ApiError]
    if status == 400:
        kind = InvalidRequestError
    elif status == 404:
        kind = NotListedError
    elif status == 503:
        kind = UnavailableError
    else:
        kind = ServerError
    return kind(status, code, message, body, retry_after_s(response), response.headers.get("date"))


def prices_request(
    pairs: tuple[str, ...] | None, previous: PricesAnswer | None
) -> tuple[dict[str, str], dict[str, str]]:
    """The query and headers of a prices read: ``If-None-Match`` when the last answer for the same
    pairs gave an ETag."""
    params = {"pairs": ",".join(pairs)} if pairs else {}
    headers = {"Accept": "application/json", "Accept-Encoding": "gzip"}
    if previous is not None and previous.etag:
        headers["If-None-Match"] = previous.etag
    return params, headers


def prices_answer(
    response: httpx.Response, sent_ms: float, received_ms: float, previous: PricesAnswer | None
) -> PricesAnswer:
    """A 200, 206 or 304 as an answer; any other status raises its typed error."""
    date, etag = response.headers.get("date"), response.headers.get("etag")
    if response.status_code == 304 and previous is not None:
        return replace(
            previous, status_code=304, etag=etag or previous.etag, date=date, sent_ms=sent_ms,
            received_ms=received_ms, max_age_s=_max_age(response),
        )  # fmt: skip
    if response.status_code not in (200, 206):
        raise error_for(response)
    return PricesAnswer(
        status_code=response.status_code,
        entries=parse_prices(_json(response)),
        missing=_header_list(response, "x-missing-pairs"),
        not_listed=_header_list(response, "x-not-listed-pairs"),
        etag=etag,
        date=date,
        sent_ms=sent_ms,
        received_ms=received_ms,
        max_age_s=_max_age(response),
    )


def history_params(
    pair: str, interval: str, from_ms: int | None, to_ms: int | None, limit: int | None
) -> dict[str, str]:
    (pair,) = normalise_pairs([pair])
    if interval not in INTERVALS:
        raise InvalidRequestError(
            400, "invalid_parameter", f"invalid interval {interval!r}: one of {', '.join(INTERVALS)}"
        )
    params = {"pair": pair, "interval": interval}
    for name, value in (("from", from_ms), ("to", to_ms), ("limit", limit)):
        if value is not None:
            params[name] = str(int(value))
    return params


def history_answer(response: httpx.Response) -> History:
    if response.status_code != 200:
        raise error_for(response)
    return parse_history(_json(response))


def health_answer(response: httpx.Response) -> dict[str, Any]:
    """Health's body: 200 for ``ok`` and ``degraded``, 503 for ``down``, both a health report."""
    if response.status_code not in (200, 503):
        raise error_for(response)
    body = _json(response)
    if not isinstance(body, dict) or not isinstance(body.get("status"), str):
        raise (
            error_for(response)
            if response.status_code == 503
            else ResponseFormatError("health.status", "missing")
        )
    return body
