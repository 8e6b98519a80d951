"""The read API's routed side: history, health, its alias and the API description, with their
OpenAPI.

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
from market_data import store
from market_data.candle_models import HistoryBody
from market_data.clock import now_ms
from market_data.config import get_settings
from market_data.errors import InvalidPairError, InvalidRequestError
from market_data.http import JSON, ApiResponse, error_response
from market_data.http_routes import add_common_error_routes, to_response
from market_data.models import ErrorBody, HealthBody, NotListedBody, PriceEntry, UnavailableBody
from prices_api.handler import HEALTH_PATH, HISTORY_PATH, INIT_PATH, OPENAPI_PATH, answer_prices
from prices_api.health import shared_health
from prices_api.history import DEFAULT_LIMIT, MAX_LIMIT, NeverListedError, parse_query, read_history
from prices_api.prices import PRICES_PATH

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
        200: _json_content(
            dict[str, PriceEntry],
            "Every requested pair is present (fresh or stale); {} for every listed pair while none is",
        ),
        206: _json_content(dict[str, PriceEntry], "Some pairs present; X-Missing-Pairs names the others"),
        400: _json_content(ErrorBody, "Malformed or oversize pairs parameter, or an unknown query parameter"),
        404: _json_content(NotListedBody, "None of the requested pairs is listed: none will come"),
        503: _json_content(
            UnavailableBody, "None of the requested pairs is available yet (some will come); see Retry-After"
        ),
    },
)
def prices() -> Response[str]:
    event = app.current_event
    include = event.get_query_string_value("include")
    return to_response(answer_prices(event.get_query_string_value("pairs"), include))


@app.get(
    HISTORY_PATH,
    summary="A pair's candles (1m, 5m, 15m, 1h), from the cache and DynamoDB only",
    responses={
        200: _json_content(HistoryBody, "The candles in the range, oldest first, and the gaps between them"),
        400: _json_content(ErrorBody, "A bad or missing parameter, named; a range past what is kept"),
        404: _json_content(ErrorBody, "The pair has never been listed"),
        503: _json_content(ErrorBody, "Neither the cache nor DynamoDB answered"),
    },
)
def history() -> Response[str]:
    now = now_ms()
    try:
        query = parse_query(dict(app.current_event.query_string_parameters or {}), now)
    except InvalidPairError as exc:
        return to_response(error_response(400, "invalid_pair", str(exc)))
    except InvalidRequestError as exc:
        return to_response(error_response(400, "invalid_parameter", str(exc)))
    try:
        body = read_history(query, settings=get_settings(), now=now)
    except NeverListedError as exc:
        answer = error_response(404, "pair_not_listed", str(exc), pair=query.pair)
        answer.headers["Cache-Control"] = "no-store"
        return to_response(answer)
    except store.StoreUnavailableError:
        message = "history is unavailable: neither the cache nor DynamoDB answered; retry shortly"
        return to_response(error_response(503, "unavailable", message))
    headers = {"Content-Type": JSON, "Cache-Control": "public, max-age=1"}
    return to_response(ApiResponse(200, body.decode(), headers))


HEALTH_RESPONSES: dict[int, Any] = {
    200: _json_content(HealthBody, "The fetcher runs (status ok or degraded, with the reason)"),
    # The handler refuses a query parameter on every route (prices_api.handler.QUERY_PARAMETERS).
    400: _json_content(ErrorBody, "A query parameter was given: this route takes none"),
    503: _json_content(HealthBody, "The fetcher is down"),
}


def health_response() -> Response[str]:
    """503 only when the fetcher is down: ok and degraded both serve prices."""
    body, status = shared_health(settings=get_settings(), now=now_ms())
    headers = {"Cache-Control": "no-store", "Content-Type": JSON}
    return to_response(ApiResponse(503 if status == "down" else 200, body.decode(), headers))


@app.get(HEALTH_PATH, summary="Fetcher heartbeat, stats and cache freshness", responses=HEALTH_RESPONSES)
def health() -> Response[str]:
    return health_response()


@app.get(
    INIT_PATH,
    summary="Same body as /health, kept for source design 002's clients",
    responses=HEALTH_RESPONSES,
)
def init() -> Response[str]:
    return health_response()


@app.get(OPENAPI_PATH, summary="This description", include_in_schema=False)
def openapi() -> Response[str]:
    return Response(
        status_code=200,
        body=describe_api(),
        content_type=JSON,
        headers={"Cache-Control": "public, max-age=300"},
    )


INCLUDE_PARAMETER = {
    "name": "include",
    "in": "query",
    "required": False,
    "description": "sparkline: each entry gains 'sparkline', 96 closes of 15 minutes (the last 24 h, "
    "ending with the current price; null where an interval had none). Left out, entries are unchanged.",
    "schema": {"type": "string", "enum": ["sparkline"]},
}
IF_NONE_MATCH_PARAMETER = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "An ETag of an earlier answer: 304 with no body while it still holds",
    "schema": {"type": "string"},
}
VALIDATOR_HEADERS = {
    "ETag": {"description": "Weak validator of the answer (the pairs, their tickers, their freshness)",
             "schema": {"type": "string"}},
    "Cache-Control": {"description": "public, max-age = whole seconds left in the slot whose tick wrote them",
                      "schema": {"type": "string"}},
    "Last-Modified": {"description": "The newest entry's fetchedAt", "schema": {"type": "string"}},
    "Vary": {"description": "Accept-Encoding: gzip above 1 KB when asked", "schema": {"type": "string"}},
}  # fmt: skip
HISTORY_PARAMETERS = [
    {"name": "pair", "in": "query", "required": True, "description": "One BASE/QUOTE pair",
     "schema": {"type": "string", "pattern": f"^{_PAIR}$", "example": "BTC/USDT"}},
    {"name": "interval", "in": "query", "required": False,
     "description": "Candle interval; 1m, 5m and 15m reach back 24 h, 1h 90 days",
     "schema": {"type": "string", "enum": ["1m", "5m", "15m", "1h"], "default": "1m"}},
    {"name": "from", "in": "query", "required": False,
     "description": "Start, ms since epoch (rounded down to the interval). Given: the oldest `limit` candles "
     "from it. Left out: the newest `limit` candles up to `to`.",
     "schema": {"type": "integer", "minimum": 0}},
    {"name": "to", "in": "query", "required": False, "description": "End, ms since epoch (default: now)",
     "schema": {"type": "integer", "minimum": 0}},
    {"name": "limit", "in": "query", "required": False, "description": "Most candles in the answer",
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
]  # fmt: skip


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
            "collapse, empty entries such as a trailing comma ignored; no pair at all is a 400); left "
            "out = every listed pair. No other query parameter is taken.",
            # What parse_pairs_param takes: at least one pair; empty entries and spaces are ignored.
            "schema": {"type": "string", "pattern": PAIRS_PATTERN, "example": "BTC/USDT,ETH/USDT"},
        }
    ]
    operation["responses"]["206"]["headers"] = {
        "X-Missing-Pairs": {"description": "Comma-separated pairs not served", "schema": {"type": "string"}},
        "X-Not-Listed-Pairs": {
            "description": "Of those, the pairs that are not listed (none will come); absent when every "
            "missing pair is listed",
            "schema": {"type": "string"},
        },
    }
    operation["responses"]["503"]["headers"] = {
        "Retry-After": {"description": "Seconds until the next fetch", "schema": {"type": "integer"}}
    }
    operation["parameters"] += [INCLUDE_PARAMETER, IF_NONE_MATCH_PARAMETER]
    for status in ("200", "206"):
        operation["responses"][status].setdefault("headers", {}).update(VALIDATOR_HEADERS)
    operation["responses"]["304"] = {
        "description": "If-None-Match holds the answer's ETag: nothing changed; no body",
        "headers": {name: VALIDATOR_HEADERS[name] for name in ("ETag", "Cache-Control", "Vary")},
    }
    schema["paths"][HISTORY_PATH]["get"]["parameters"] = HISTORY_PARAMETERS
    # The whitelist function's routes, as it describes them (generated from its code: make openapi).
    whitelist = orjson.loads(WHITELIST_DESCRIPTION.read_bytes())
    schema["paths"].update(whitelist["paths"])
    schema.setdefault("components", {}).setdefault("schemas", {}).update(whitelist["components"]["schemas"])
    return orjson.dumps(schema).decode()


add_common_error_routes(app)
