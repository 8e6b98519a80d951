"""Lambda entry point of the read API: routing and error mapping only; logic lives beside it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import cache
from typing import Any

import orjson
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from market_data import cache as market_cache
from market_data.config import get_settings
from market_data.http import (
    JSON,
    ApiResponse,
    add_common_error_routes,
    error_response,
    to_http_api_result,
    to_response,
    unexpected_error,
)
from market_data.models import ErrorBody, HealthBody, PriceEntry, UnavailableBody, now_ms
from market_data.observability import RequestMetrics, logger, traced
from market_data.pairs import InvalidPairError
from prices_api.health import get_health
from prices_api.prices import get_prices

BASE = "/api/market-data"
PRICES_PATH = f"{BASE}/prices"
app = APIGatewayHttpResolver()


def share_read_window(counts: Mapping[str, float], latencies_ms: list[float]) -> None:
    """Each container's window of figures joins the minute's shared ones, which health reports."""
    market_cache.record_reads(market_cache.get_client(get_settings()), counts, latencies_ms, now_ms=now_ms())


read_metrics = RequestMetrics("prices-api", "ReadLatency", on_flush=share_read_window)


def _json_content(model: Any, description: str) -> Any:
    return {"description": description, "content": {JSON: {"model": model}}}


@app.get(
    PRICES_PATH,
    summary="Latest prices of listed pairs, from the cache only",
    responses={
        200: _json_content(dict[str, PriceEntry], "Every requested pair is present (fresh or stale)"),
        206: _json_content(dict[str, PriceEntry], "Some pairs present; X-Missing-Pairs names the others"),
        400: _json_content(ErrorBody, "Malformed or oversize pairs parameter"),
        503: _json_content(UnavailableBody, "None of the requested pairs is available; see Retry-After"),
    },
)
def prices() -> Response[str]:
    raw_pairs = app.current_event.get_query_string_value("pairs")
    return to_response(get_prices(raw_pairs, settings=get_settings(), now=now_ms(), metrics=read_metrics))


HEALTH_RESPONSES: dict[int, Any] = {
    200: _json_content(HealthBody, "The fetcher runs (status ok or degraded, with the reason)"),
    503: _json_content(HealthBody, "The fetcher is down"),
}


@app.get(f"{BASE}/health", summary="Fetcher heartbeat, stats and cache freshness", responses=HEALTH_RESPONSES)
def health() -> Response[str]:
    return to_response(get_health(settings=get_settings(), now=now_ms()))


@app.get(
    f"{BASE}/init",
    summary="Same body as /health, kept for source design 002's clients",
    responses=HEALTH_RESPONSES,
)
def init() -> Response[str]:
    return to_response(get_health(settings=get_settings(), now=now_ms()))


@app.get(f"{BASE}/openapi.json", summary="This description", include_in_schema=False)
def openapi() -> Response[str]:
    return Response(
        status_code=200,
        body=describe_api(),
        content_type=JSON,
        headers={"Cache-Control": "public, max-age=300"},
    )


@cache
def describe_api() -> str:
    """The OpenAPI description generated from the routes and models above.

    The hot path reads its one query parameter itself (no per-request validation layer), so
    the parameter and the headers the contract promises are added to the generated document.
    """
    schema = app.get_openapi_schema(title="Market data API", version="1.0.0").model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    operation = schema["paths"][PRICES_PATH]["get"]
    operation["parameters"] = [
        {
            "name": "pairs",
            "in": "query",
            "required": False,
            "description": "Comma-separated BASE/QUOTE pairs (at most 100, case-insensitive, duplicates "
            "collapse); left out = every listed pair",
            "schema": {"type": "string", "example": "BTC/USDT,ETH/USDT"},
        }
    ]
    operation["responses"]["206"]["headers"] = {
        "X-Missing-Pairs": {"description": "Comma-separated pairs not served", "schema": {"type": "string"}}
    }
    operation["responses"]["503"]["headers"] = {
        "Retry-After": {"description": "Seconds until the next fetch", "schema": {"type": "integer"}}
    }
    return orjson.dumps(schema).decode()


def invalid_pairs(exc: InvalidPairError) -> ApiResponse:
    return error_response(400, "invalid_pairs", str(exc))


@app.exception_handler(InvalidPairError)
def bad_pairs(exc: InvalidPairError) -> Response:
    return to_response(invalid_pairs(exc))


add_common_error_routes(app)


def serve_prices(event: dict[str, Any]) -> dict[str, Any]:
    """GET /prices without the router: it is nearly every request this function gets, and the
    router's generality (route matching, event wrappers, response building) cost more than the
    cache read itself. Same logic and the same error answers as the routed path above."""
    raw_pairs = (event.get("queryStringParameters") or {}).get("pairs")
    try:
        answer = get_prices(raw_pairs, settings=get_settings(), now=now_ms(), metrics=read_metrics)
    except InvalidPairError as exc:
        answer = invalid_pairs(exc)
    except Exception:
        logger.exception("unexpected error")
        answer = unexpected_error()
    return to_http_api_result(answer)


@traced
@logger.inject_lambda_context  # context keys and the cold-start flag
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    started = time.perf_counter()
    # The request id as correlation id, read directly: a JMESPath search per request costs more
    # on this path than the rest of the logging set-up.
    logger.set_correlation_id(event.get("requestContext", {}).get("requestId"))
    is_read = event.get("rawPath") == PRICES_PATH and event["requestContext"]["http"]["method"] == "GET"
    response = serve_prices(event) if is_read else app.resolve(event, context)
    latency_ms = (time.perf_counter() - started) * 1000
    status = response["statusCode"]
    read_metrics.record_response(status, latency_ms if is_read else None)
    # No info line per request (the read path's log bill would grow with its traffic): a debug
    # line, which POWERTOOLS_LOGGER_SAMPLE_RATE turns on for a sample of invocations.
    logger.debug("request served", path=event.get("rawPath"), status=status, latency_ms=round(latency_ms, 3))
    return response
