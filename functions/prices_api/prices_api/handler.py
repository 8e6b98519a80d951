"""Lambda entry point of the read API: a direct path for price reads, the router for the rest.

Price reads are nearly every request this function gets. They are answered without the router
(route matching, event wrappers and response building cost more than the cache read itself) and
without importing it or pydantic at all, which keeps the cold start near that of redis alone.
Health and the API description go through ``prices_api.routes``, imported on first use. The
query parameters of every GET route are checked here, before either path, so that no route
ignores one it does not take.
"""

from __future__ import annotations

import math
import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from market_data.candles import SPARKLINE_STEP_MS
from market_data.clock import now_ms
from market_data.config import Settings, get_settings
from market_data.errors import InvalidPairError
from market_data.http import ApiResponse, error_response, json_response, to_http_api_result, unexpected_error
from market_data.observability import debug_enabled, logger, traced, with_request_context
from market_data.prices import SPARKLINE, add_sparklines
from prices_api.prices import BASE, PRICES_PATH, PricesAnswer, get_prices, read_metrics, share_read_window

__all__ = ["lambda_handler", "read_metrics", "share_read_window"]

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


HEALTH_PATH, INIT_PATH, OPENAPI_PATH = f"{BASE}/health", f"{BASE}/init", f"{BASE}/openapi.json"
HISTORY_PATH = f"{BASE}/history"
# The query parameters each GET route of this function takes. Any other is refused, named, rather
# than ignored: a misspelt ``?pair=BTC/USDT`` would otherwise be answered with every pair.
QUERY_PARAMETERS: dict[str, frozenset[str]] = {
    PRICES_PATH: frozenset({"pairs", "include"}),
    HISTORY_PATH: frozenset({"pair", "interval", "from", "to", "limit"}),
    HEALTH_PATH: frozenset(),
    INIT_PATH: frozenset(),
    OPENAPI_PATH: frozenset(),
}


def refuse_unknown_parameters(event: dict[str, Any]) -> ApiResponse | None:
    """400 naming the query parameters the GET route does not take (and those it does); None when
    there are none, or when the path is not one of this function's GET routes (the router's 404)."""
    parameters = event.get("queryStringParameters")
    if not parameters or event["requestContext"]["http"]["method"] != "GET":
        return None
    path = event.get("rawPath", "")
    known = QUERY_PARAMETERS.get(path)
    if known is None:
        return None
    unknown = parameters.keys() - known
    return unknown_parameters(path, unknown, known) if unknown else None


def unknown_parameters(path: str, unknown: set[str], known: frozenset[str]) -> ApiResponse:
    """400 naming the parameters ``path`` does not take, and the ones it does."""
    names = ", ".join(repr(name) for name in sorted(unknown))
    takes = f"takes only {', '.join(sorted(known))}" if known else "takes no query parameter"
    plural = "s" if len(unknown) > 1 else ""
    message = f"unknown query parameter{plural} {names}: {path} {takes}"
    return error_response(400, "unknown_parameters", message)


def validators(answer: PricesAnswer, settings: Settings, now: int) -> dict[str, str]:
    """What lets a cache or a client keep the answer: never past the slot after the tick that
    wrote it (that slot's tick replaces it; 0 once it has begun, until it has written), then
    revalidated with its ETag (a 304 costs less than the 200). From last known good, the rest of
    the current slot."""
    interval = settings.fetch_interval_ms
    written = answer.written_slot if answer.written_slot is not None else now // interval
    keep_ms = max(0, min(interval, (written + 1) * interval - now))
    headers = {"Cache-Control": f"public, max-age={keep_ms // 1000}", "Vary": "Accept-Encoding"}
    if answer.etag is not None:
        headers["ETag"] = answer.etag
    modified = [int(entry["fetchedAt"]) for entry in answer.entries.values()]  # type: ignore[call-overload]
    if modified:
        headers["Last-Modified"] = formatdate(max(modified) / 1000, usegmt=True)
    return headers


def prices_response(answer: PricesAnswer, settings: Settings, now: int) -> ApiResponse:
    """200 when every wanted pair is present, 206 naming the missing ones, 404 when every pair asked
    for is one that is not listed, else 503: nothing yet, and some of it will come; 304 when the
    client's ``If-None-Match`` holds the answer's validator."""
    if answer.not_modified:
        return ApiResponse(304, "", validators(answer, settings, now))
    if not answer.missing:
        # Every listed pair asked for while none is listed is a complete answer too: ``{}``.
        if answer.entries or answer.listing_known:
            return json_response(200, answer.entries, validators(answer, settings, now))
    elif answer.entries:
        headers = {**validators(answer, settings, now), "X-Missing-Pairs": ",".join(answer.missing)}
        if answer.not_listed:
            headers["X-Not-Listed-Pairs"] = ",".join(answer.not_listed)
        return json_response(206, answer.entries, headers)
    elif len(answer.not_listed) == len(answer.missing):
        return not_listed_response(answer.not_listed)
    message = (
        "price data is not available yet; retry shortly"
        if answer.missing
        else "no pair is listed yet; the fetcher fills the cache within one interval"
    )
    extra: dict[str, object] = {"unavailablePairs": answer.missing}
    if answer.not_listed:
        extra["notListed"] = answer.not_listed
        message += f"; not listed, so never served until they are: {', '.join(answer.not_listed)}"
    response = error_response(503, "unavailable", message, **extra)
    response.headers["Retry-After"] = str(math.ceil(settings.fetch_interval_ms / 1000))
    response.headers["Cache-Control"] = "no-store"
    return response


def not_listed_response(not_listed: dict[str, str]) -> ApiResponse:
    """404 without ``Retry-After``: none of these pairs is listed, so retrying brings nothing."""
    names = ", ".join(not_listed)
    one = next(iter(not_listed)).replace("/", "-")
    message = (
        f"not listed: {names}; a pair is served once it is listed "
        f"(GET {BASE}/whitelist/{one} shows a pair's status, POST {BASE}/whitelist submits one)"
    )
    response = error_response(404, "pairs_not_listed", message, notListed=not_listed)
    response.headers["Cache-Control"] = "no-store"
    return response


def invalid_pairs(exc: InvalidPairError) -> ApiResponse:
    """400 naming the bad ``pairs`` value, the same from the direct path and the router."""
    return error_response(400, "invalid_pairs", str(exc))


def answer_prices(
    raw_pairs: str | None, include: str | None = None, if_none_match: str | None = None
) -> ApiResponse:
    """GET /prices, for both paths: the answer, or the error answer of a bad ``pairs`` or
    ``include`` value."""
    settings = get_settings()
    if include is not None and include != SPARKLINE:
        return error_response(400, "invalid_include", f"invalid include {include!r}: expected {SPARKLINE}")
    now = now_ms()
    # Sparklines move every 15 minutes: their interval is part of what the validator covers.
    variant = f"{SPARKLINE}{now // SPARKLINE_STEP_MS}" if include == SPARKLINE else ""
    try:
        answer = get_prices(
            raw_pairs, settings=settings, now=now, metrics=read_metrics, if_none_match=if_none_match,
            variant=variant,
        )  # fmt: skip
    except InvalidPairError as exc:
        return invalid_pairs(exc)
    if include == SPARKLINE:
        add_sparklines(answer.entries, settings=settings, now=now)
    return prices_response(answer, settings, now)


def serve_prices(event: dict[str, Any]) -> dict[str, Any]:
    """GET /prices: the same logic and error answers as a routed request, without the router;
    gzip when the client accepts it."""
    parameters = event.get("queryStringParameters") or {}
    headers = event.get("headers") or {}  # API Gateway hands them over in lower case
    try:
        answer = answer_prices(
            parameters.get("pairs"), parameters.get("include"), headers.get("if-none-match")
        )
    except Exception:
        logger.exception("unexpected error")
        answer = unexpected_error()
    return to_http_api_result(answer, headers.get("accept-encoding"))


def serve_page_file(event: dict[str, Any]) -> dict[str, Any] | None:
    """The live page's files (``/``, its script and style), gzip when the client accepts it; None
    for any other path. Query strings are ignored: the page keeps its pairs in the URL's fragment."""
    if event["requestContext"]["http"]["method"] not in ("GET", "HEAD"):
        return None
    from prices_api.page import page_file  # first use only, as the router: price reads never need it

    headers = event.get("headers") or {}
    found = page_file(event.get("rawPath", ""), headers.get("host", ""))
    if found is None:
        return None
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None and found.etag in if_none_match:
        return to_http_api_result(ApiResponse(304, "", found.headers))
    return to_http_api_result(ApiResponse(200, found.body, found.headers), headers.get("accept-encoding"))


def serve_routed(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from prices_api.routes import app  # first use only: see the module's docstring

    return app.resolve(event, context)


@traced
@with_request_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    started = time.perf_counter()
    is_read = event.get("rawPath") == PRICES_PATH and event["requestContext"]["http"]["method"] == "GET"
    refused = refuse_unknown_parameters(event)
    if refused is not None:
        response = to_http_api_result(refused)
    elif is_read:
        response = serve_prices(event)
    else:
        response = serve_page_file(event) or serve_routed(event, context)
    latency_ms = (time.perf_counter() - started) * 1000
    status = response["statusCode"]
    read_metrics.record_response(status, latency_ms if is_read else None)
    # No info line per request (the read path's log bill would grow with its traffic). The debug
    # line shows locally at POWERTOOLS_LOG_LEVEL=DEBUG; deployed, Lambda filters this function's
    # logs at INFO (template.yaml), so it never reaches CloudWatch.
    if debug_enabled():
        latency = round(latency_ms, 3)
        logger.debug("request served", path=event.get("rawPath"), status=status, latency_ms=latency)
    return response
