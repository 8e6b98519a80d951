"""Lambda entry point of the read API: a direct path for price reads, the router for the rest.

Price reads are nearly every request this function gets. They are answered without the router
(route matching, event wrappers and response building cost more than the cache read itself) and
without importing it or pydantic at all, which keeps the cold start near that of redis alone.
Health and the API description go through ``prices_api.routes``, imported on first use.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from market_data.clock import now_ms
from market_data.config import Settings, get_settings
from market_data.errors import InvalidPairError
from market_data.http import ApiResponse, error_response, json_response, to_http_api_result, unexpected_error
from market_data.observability import logger, traced
from prices_api.prices import PRICES_PATH, PricesAnswer, get_prices, read_metrics, share_read_window

__all__ = ["lambda_handler", "read_metrics", "share_read_window"]

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


CACHE_CONTROL = "public, max-age=1"


def prices_response(answer: PricesAnswer, settings: Settings) -> ApiResponse:
    """200 when every wanted pair is present, 206 naming the missing ones, 503 when none is."""
    if answer.entries and not answer.missing:
        return json_response(200, answer.entries, {"Cache-Control": CACHE_CONTROL})
    if answer.entries:
        headers = {"Cache-Control": CACHE_CONTROL, "X-Missing-Pairs": ",".join(answer.missing)}
        return json_response(206, answer.entries, headers)
    message = (
        "price data is not available yet; retry shortly"
        if answer.asked
        else "no pair is listed yet; the fetcher fills the cache within one interval"
    )
    response = error_response(503, "unavailable", message, unavailablePairs=answer.missing)
    response.headers["Retry-After"] = str(math.ceil(settings.fetch_interval_ms / 1000))
    response.headers["Cache-Control"] = "no-store"
    return response


def invalid_pairs(exc: InvalidPairError) -> ApiResponse:
    """400 naming the bad ``pairs`` value, the same from the direct path and the router."""
    return error_response(400, "invalid_pairs", str(exc))


def answer_prices(raw_pairs: str | None) -> ApiResponse:
    """GET /prices, for both paths: the answer, or the error answer of a bad ``pairs`` value."""
    settings = get_settings()
    try:
        return prices_response(
            get_prices(raw_pairs, settings=settings, now=now_ms(), metrics=read_metrics), settings
        )
    except InvalidPairError as exc:
        return invalid_pairs(exc)


def serve_prices(event: dict[str, Any]) -> dict[str, Any]:
    """GET /prices: the same logic and error answers as a routed request, without the router."""
    raw_pairs = (event.get("queryStringParameters") or {}).get("pairs")
    try:
        answer = answer_prices(raw_pairs)
    except Exception:
        logger.exception("unexpected error")
        answer = unexpected_error()
    return to_http_api_result(answer)


def serve_routed(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from prices_api.routes import app  # first use only: see the module's docstring

    return app.resolve(event, context)


@traced
@logger.inject_lambda_context  # context keys and the cold-start flag
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    started = time.perf_counter()
    # The request id as correlation id, read directly: a JMESPath search per request costs more
    # on this path than the rest of the logging set-up.
    logger.set_correlation_id(event.get("requestContext", {}).get("requestId"))
    is_read = event.get("rawPath") == PRICES_PATH and event["requestContext"]["http"]["method"] == "GET"
    response = serve_prices(event) if is_read else serve_routed(event, context)
    latency_ms = (time.perf_counter() - started) * 1000
    status = response["statusCode"]
    read_metrics.record_response(status, latency_ms if is_read else None)
    # No info line per request (the read path's log bill would grow with its traffic). The debug
    # line shows locally at POWERTOOLS_LOG_LEVEL=DEBUG; deployed, Lambda filters this function's
    # logs at INFO (template.yaml), so it never reaches CloudWatch.
    logger.debug("request served", path=event.get("rawPath"), status=status, latency_ms=round(latency_ms, 3))
    return response
