"""HTTP answers shared by the API functions: JSON bodies and the error shape.

Logic modules return an ``ApiResponse`` (no web framework in them, nor here: the prices path
answers without one); routed handlers turn it into a Powertools ``Response`` with
``market_data.http_routes.to_response``.
"""

from __future__ import annotations

import base64
import gzip
from dataclasses import dataclass, field
from typing import Any

import orjson

JSON = "application/json"
# Below this a body gains too little from gzip to pay for it (a header and a trailer of 18 bytes,
# and the client's inflating): one pair's entry, an error.
GZIP_MIN_BYTES = 1_024
GZIP_LEVEL = 6  # docs/benchmarks.md: level 9 saves under 2 % more for twice the time


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: object, headers: dict[str, str] | None = None) -> ApiResponse:
    return ApiResponse(status, orjson.dumps(payload).decode(), {"Content-Type": JSON, **(headers or {})})


def error_response(status: int, error: str, message: str, **extra: object) -> ApiResponse:
    return json_response(status, {"error": error, "message": message, **extra})


def to_http_api_result(answer: ApiResponse, accept_encoding: str | None = None) -> dict[str, Any]:
    """The HTTP API (payload 2.0) result for ``answer``, for a route served without the router;
    gzip-encoded (a binary body, base64 as API Gateway takes it) when ``accept_encoding`` allows
    gzip and the body is large enough to gain from it."""
    if accept_encoding is not None and len(answer.body) >= GZIP_MIN_BYTES and accepts_gzip(accept_encoding):
        compressed = gzip.compress(answer.body.encode(), compresslevel=GZIP_LEVEL, mtime=0)
        return {
            "statusCode": answer.status,
            "headers": {**answer.headers, "Content-Encoding": "gzip"},
            "body": base64.b64encode(compressed).decode(),
            "isBase64Encoded": True,
        }
    return {
        "statusCode": answer.status,
        "headers": answer.headers,
        "body": answer.body,
        "isBase64Encoded": False,
    }


def accepts_gzip(accept_encoding: str) -> bool:
    """``Accept-Encoding`` names gzip (or ``*``) without ``q=0``."""
    for coding in accept_encoding.lower().split(","):
        name, _, parameters = coding.strip().partition(";")
        if name.strip() in ("gzip", "*"):
            quality = parameters.replace(" ", "")
            return not (quality.startswith("q=0") and quality.strip("q=0.") == "")
    return False


def unexpected_error() -> ApiResponse:
    """A bug: logged with its traceback by the caller, answered without details."""
    return error_response(500, "internal_error", "unexpected error; it has been logged")
