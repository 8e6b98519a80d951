"""The Powertools router's side of the HTTP answers: routed handlers (health, whitelist, the API
description) use it; the prices path does not, so the router is never imported on a price read.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from market_data.http import JSON, ApiResponse, error_response, unexpected_error
from market_data.observability import logger


def to_response(answer: ApiResponse) -> Response[str]:
    return Response(status_code=answer.status, body=answer.body, headers=answer.headers, content_type=JSON)


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
