"""HTTP answers shared by the API functions: JSON bodies, the error shape, the common error routes.

Logic modules return an ``ApiResponse`` (no web framework in them); handlers turn it into a
Powertools ``Response`` with ``to_response``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from aws_lambda_powertools.event_handler import Response

from market_data.observability import logger

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


def to_response(answer: ApiResponse) -> Response[str]:
    return Response(status_code=answer.status, body=answer.body, headers=answer.headers, content_type=JSON)


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


def add_common_error_routes(app: Any) -> None:
    """404 for an unknown route and a logged 500 for a bug, both in the ``{"error", "message"}`` shape."""

    @app.not_found
    def not_found(_: Exception) -> Response[str]:
        path = app.current_event.path
        return to_response(error_response(404, "not_found", f"no route for {path}"))

    @app.exception_handler(Exception)
    def unexpected(exc: Exception) -> Response[str]:
        logger.exception("unexpected error")
        return to_response(unexpected_error())
