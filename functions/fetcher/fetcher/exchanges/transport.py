"""One exchange's HTTP calls and the error mapping they all share.

Every exchange fails in the same ways (timeouts, a 429, a 451 for this location, a CDN's HTML page
on a 5xx, a body that is not JSON), and operators count them by the same kinds. What differs is
passed in: how the exchange words an error, which statuses mean "slow down", and errors it puts in
the body.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from fetcher.exchanges.base import ExchangeError, RateLimitedError

# A body that could not be parsed as JSON.
NOT_JSON: Any = object()

# An exchange's own errors, for a response the generic mapping would pass: (status, body) -> error.
Refine = Callable[[int, Any], ExchangeError | None]


class Transport:
    """GETs against one exchange's base URL over the container's shared ``httpx.Client`` (created
    once, with timeouts), each answer's JSON or the ExchangeError it means."""

    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        *,
        default_retry_after_s: int,
        describe: Callable[[Any], str | None],
        rate_limit_statuses: frozenset[int] = frozenset({429}),
        rate_limited_body: Callable[[Any], bool] = lambda body: False,
        restricted_advice: str = "",
        observe: Callable[[httpx.Response], None] | None = None,
    ) -> None:
        self._http = http
        self.base_url = base_url.rstrip("/")
        self._default_retry_after_s = default_retry_after_s
        self._describe = describe  # the exchange's words for an error body (None: not its shape)
        self._rate_limit_statuses = rate_limit_statuses
        self._rate_limited_body = rate_limited_body
        self._restricted_advice = restricted_advice
        self._observe = observe  # sees every response (Binance's used-weight header)

    def get(self, path: str, params: dict[str, str] | None = None, *, refine: Refine | None = None) -> Any:
        """The JSON body of a successful GET; raises the ExchangeError its failure means.

        ``refine`` maps the exchange's own errors (an unknown symbol, a product not found) before
        the generic ones, once rate limits, 451 and 5xx are ruled out.
        """
        try:
            response = self._http.get(self.base_url + path, params=params)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            cause = connect_failure(exc)
            kind = "timeout" if isinstance(exc, httpx.ConnectTimeout) else "network"
            raise ExchangeError(kind, f"{path}: {cause}", unreachable=cause) from exc
        except httpx.TimeoutException as exc:
            raise ExchangeError("timeout", f"{path}: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise ExchangeError("network", f"{path}: {type(exc).__name__}: {exc}") from exc
        if self._observe is not None:
            self._observe(response)
        status = response.status_code
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = NOT_JSON
        if status in self._rate_limit_statuses or (body is not NOT_JSON and self._rate_limited_body(body)):
            retry_after = _retry_after(response, self._default_retry_after_s)
            message = f"{path}: HTTP {status} {self._message(response, body)}"
            # An error in a 200's body (Kraken's) is a rate limit like a 429.
            raise RateLimitedError(
                status if status in self._rate_limit_statuses else 429, retry_after, message
            )
        if status == 451:  # this location may not be served: no request from here will succeed
            message = f"{path}: HTTP 451 {self._message(response, body)}"
            if self._restricted_advice:
                message += f" -- {self._restricted_advice}"
            raise ExchangeError(
                "restricted_location", message, status=451, advice=self._restricted_advice or None
            )
        if status >= 500:  # often a CDN's page rather than the exchange's own answer
            raise ExchangeError(
                "http_5xx", f"{path}: HTTP {status} {self._message(response, body)}", status=status
            )
        refined = refine(status, body) if refine is not None else None
        if refined is not None:
            raise refined
        if body is NOT_JSON:
            raise ExchangeError("bad_body", f"{path}: HTTP {status}, body is not JSON", status=status)
        if status >= 400:
            raise ExchangeError(
                "http_4xx", f"{path}: HTTP {status} {self._message(response, body)}", status=status
            )
        return body

    def _message(self, response: httpx.Response, body: Any) -> str:
        """The exchange's own words for the error, or the start of whatever else came back."""
        described = self._describe(body) if body is not NOT_JSON else None
        return described if described is not None else response.text[:200]


def connect_failure(exc: httpx.HTTPError) -> str:
    """Why no connection was made, in words an operator can act on: the host that did not resolve,
    the address that refused, the host that did not answer in time."""
    url = exc.request.url if _has_request(exc) else None
    host = url.host if url is not None else "?"
    where = f"{host}:{url.port}" if url is not None and url.port else host
    if isinstance(exc, httpx.ConnectTimeout):
        return f"connect timeout ({where})"
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, socket.gaierror):
        return f"name resolution failed ({host}: {cause.strerror or cause})"
    if isinstance(cause, ConnectionRefusedError):
        return f"connection refused ({where})"
    if isinstance(cause, OSError) and cause.strerror:
        return f"could not connect ({where}: {cause.strerror})"
    return f"could not connect ({where}: {exc})"


def _has_request(exc: httpx.HTTPError) -> bool:
    try:
        exc.request  # noqa: B018  # httpx raises RuntimeError when the error carries none
    except RuntimeError:
        return False
    return True


def _retry_after(response: httpx.Response, default_s: int) -> int:
    value = response.headers.get("retry-after", "")
    return max(1, int(value)) if value.isdigit() else default_s
