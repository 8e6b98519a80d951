"""The read API's routed side: health, its alias and the API description, with their OpenAPI.

Imported by the handler on the first request that is not a price read, so the router and the
pydantic models stay off the prices path (its cold start; see the README's benchmarks).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import orjson
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

import market_data
from market_data.clock import now_ms
from market_data.config import get_settings
from market_data.http import JSON, ApiResponse
from market_data.http_routes import add_common_error_routes, to_response
from market_data.models import ErrorBody, HealthBody, PriceEntry, UnavailableBody
from prices_api.handler import answer_prices
from prices_api.health import shared_health
from prices_api.prices import BASE, PRICES_PATH

app = APIGatewayHttpResolver()
WHITELIST_DESCRIPTION = Path(market_data.__file__).with_name("whitelist_openapi.json")
_PAIR = "[A-Za-z0-9]{1,20}/[A-Za-z0-9]{1,20}"
PAIRS_PATTERN = f"^[ ,]*{_PAIR}[ ]*(,[ ,]*({_PAIR}[ ]*)?)*$"


def _json_content(model: Any, description: str) -> Any:
    return {"description": description, "content": {JSON: {"model": model}}}


# Served by the handler's direct path; routed here too so that it is described, and answered the
# same way should the router ever receive it.
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
    return to_response(answer_prices(app.current_event.get_query_string_value("pairs")))


HEALTH_RESPONSES: dict[int, Any] = {
    200: _json_content(HealthBody, "The fetcher runs (status ok or degraded, with the reason)"),
    503: _json_content(HealthBody, "The fetcher is down"),
}


def health_response() -> Response[str]:
    """503 only when the fetcher is down: ok and degraded both serve prices."""
    body, status = shared_health(settings=get_settings(), now=now_ms())
    headers = {"Cache-Control": "no-store", "Content-Type": JSON}
    return to_response(ApiResponse(503 if status == "down" else 200, body.decode(), headers))


@app.get(f"{BASE}/health", summary="Fetcher heartbeat, stats and cache freshness", responses=HEALTH_RESPONSES)
def health() -> Response[str]:
    return health_response()


@app.get(
    f"{BASE}/init",
    summary="Same body as /health, kept for source design 002's clients",
    responses=HEALTH_RESPONSES,
)
def init() -> Response[str]:
    return health_response()


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
            # What parse_pairs_param takes: at least one pair; empty entries and spaces are ignored.
            "schema": {"type": "string", "pattern": PAIRS_PATTERN, "example": "BTC/USDT,ETH/USDT"},
        }
    ]
    operation["responses"]["206"]["headers"] = {
        "X-Missing-Pairs": {"description": "Comma-separated pairs not served", "schema": {"type": "string"}}
    }
    operation["responses"]["503"]["headers"] = {
        "Retry-After": {"description": "Seconds until the next fetch", "schema": {"type": "integer"}}
    }
    # The whitelist function's routes, as it describes them (generated from its code: make openapi).
    whitelist = orjson.loads(WHITELIST_DESCRIPTION.read_bytes())
    schema["paths"].update(whitelist["paths"])
    schema.setdefault("components", {}).setdefault("schemas", {}).update(whitelist["components"]["schemas"])
    return orjson.dumps(schema).decode()


add_common_error_routes(app)
