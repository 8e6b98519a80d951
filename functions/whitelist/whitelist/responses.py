"""The HTTP answer the logic hands back to the handler (kept free of any web framework)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
