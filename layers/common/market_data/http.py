"""HTTP answers shared by the API functions: JSON bodies and the error shape.

Logic modules return an ``ApiResponse`` (no web framework in them, nor here: the prices path
answers without one); routed handlers turn it into a Powertools ``Response`` with
``market_data.http_routes.to_response``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

JSON = "application/json"


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: object, headers: dict[str, str] | None = None) -> ApiResponse:
    return ApiResponse(status, orjson.dumps(payload).decode(), {"Content-Type": JSON, **(headers or {})})


def error_response(status: int, error: str, message: str, **extra: object) -> ApiResponse:
    return json_response(status, {"error": error, "message": message, **extra})


def to_http_api_result(answer: ApiResponse) -> dict[str, Any]:
    """The HTTP API (payload 2.0) result for ``answer``, for a route served without the router."""
    return {
        "statusCode": answer.status,
        "headers": answer.headers,
        "body": answer.body,
        "isBase64Encoded": False,
    }


def unexpected_error() -> ApiResponse:
    """A bug: logged with its traceback by the caller, answered without details."""
    return error_response(500, "internal_error", "unexpected error; it has been logged")
