"""Lambda entry point of the whitelist API: routing and error mapping only; logic lives beside it."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from market_data.clock import now_ms
from market_data.config import get_settings
from market_data.errors import (
    ActiveCapReachedError,
    InvalidPairError,
    InvalidRequestError,
    NotAuthorisedError,
    PairNotFoundError,
    PayloadTooLargeError,
    PendingCapReachedError,
    SourceLimitError,
    StatusConflictError,
    UnavailableError,
    UnsupportedMediaTypeError,
)
from market_data.http import JSON, ApiResponse, error_response, json_response
from market_data.http_routes import add_common_error_routes, to_response
from market_data.models import ErrorBody, PairRecord, SubmissionAccepted
from market_data.observability import RequestMetrics, logger, traced
from market_data.statuses import ALL
from whitelist import submissions

BASE = "/api/market-data/whitelist"
_HOUR_S = 3600
app = APIGatewayHttpResolver()
request_metrics = RequestMetrics("whitelist", "RequestLatency")


def _json_content(model: Any, description: str) -> Any:
    return {"description": description, "content": {JSON: {"model": model}}}


def record_response(record: PairRecord) -> Response[str]:
    """A record as the API serves it (``lastStatusChange`` keeps its contract name ``from``)."""
    return to_response(json_response(200, record.model_dump(mode="json", by_alias=True)))


def _raw_body() -> bytes:
    event = app.current_event
    body = event.body or ""
    return base64.b64decode(body) if event.is_base64_encoded else body.encode()


def _require_json() -> None:
    """Only a body declared JSON: a cross-site form or text/plain post (sent without a CORS
    preflight) must not make a page's visitors submit pairs."""
    declared = app.current_event.headers.get("content-type") or ""
    if declared.split(";", 1)[0].strip().lower() != JSON:
        raise UnsupportedMediaTypeError(
            f"submissions take Content-Type: {JSON}, got {declared or 'none'}; send the body as JSON"
        )


def _admin_caller() -> str:
    """The caller's ARN, once it is one of ADMIN_PRINCIPALS. The HTTP API's IAM check says only
    that the caller may invoke the API; which principals are administrators is decided here."""
    authorizer = app.current_event.raw_event.get("requestContext", {}).get("authorizer") or {}
    caller = (authorizer.get("iam") or {}).get("userArn")
    if not caller:
        raise NotAuthorisedError("admin routes need IAM authorization (SigV4-signed requests)")
    principals = get_settings().admin_principals
    if not principals:
        raise NotAuthorisedError(
            f"no admin principal is named (ADMIN_PRINCIPALS): {caller} may not change pairs"
        )
    if not submissions.admitted(caller, principals):
        logger.warning("admin route refused", caller=caller)
        raise NotAuthorisedError(f"{caller} is not one of the admin principals (ADMIN_PRINCIPALS)")
    return str(caller)


_ERRORS = {
    400: _json_content(ErrorBody, "Malformed body, pair or status; the message names the bad value"),
    404: _json_content(ErrorBody, "The pair has never been submitted"),
}


@app.post(
    BASE,
    summary="Submit a pair for the whitelist; the fetcher verifies it against the exchange",
    responses={
        200: _json_content(PairRecord, "The pair is already known: its current record"),
        202: _json_content(SubmissionAccepted, "Recorded as pending; the fetcher verifies it"),
        400: _ERRORS[400],
        413: _json_content(ErrorBody, "Body over 1024 bytes"),
        415: _json_content(ErrorBody, "The body is not declared application/json"),
        429: _json_content(
            ErrorBody, "Too many pairs served or pending, or too many submissions from this address"
        ),
    },
)
def submit() -> Response[str]:
    _require_json()
    settings = get_settings()
    event = app.current_event
    source_ip = submissions.client_address(
        event.request_context.http.source_ip, event.headers or {}, cdn_secret=settings.cdn_origin_secret
    )
    submission = submissions.submit(_raw_body(), source_ip=source_ip, settings=settings, now=now_ms())
    if not submission.created:  # a retry, or a pair known already: its record as it stands
        return record_response(submission.record)
    request_metrics.add("WhitelistSubmissions")
    record = submission.record
    body = {"pair": record.pair, "status": record.status, "submittedAt": record.submittedAt}
    return to_response(json_response(202, body))


@app.get(
    BASE,
    summary="Whitelist records in pair order, optionally of one status: ?limit= (1-100, default 100) "
    "per page, and ?cursor= the previous page's nextCursor",
    responses={400: _ERRORS[400]},
)
def list_pairs() -> Response[str]:
    query = app.current_event
    page = submissions.list_pairs(
        query.get_query_string_value("status"),
        settings=get_settings(),
        limit=query.get_query_string_value("limit"),
        cursor=query.get_query_string_value("cursor"),
    )
    body = {
        "pairs": [record.model_dump(mode="json", by_alias=True) for record in page.records],
        "nextCursor": page.next_cursor,
    }
    return to_response(json_response(200, body))


@app.get(
    f"{BASE}/<pair>",
    summary="One whitelist record; the pair as BASE-QUOTE, e.g. SOL-USDT",
    responses={200: _json_content(PairRecord, "The record"), **_ERRORS},
)
def get_pair(pair: str) -> Response[str]:
    return record_response(submissions.get_pair(pair, settings=get_settings()))


@app.delete(
    f"{BASE}/<pair>",
    summary="Admin (IAM): revoke a pair; the record is kept and fetching stops from the next slot",
    responses={200: _json_content(PairRecord, "The revoked record"), **_ERRORS},
)
def revoke(pair: str) -> Response[str]:
    return _admin_change(submissions.revoke, pair, "WhitelistRevoked")


@app.post(
    f"{BASE}/<pair>/approve",
    summary="Admin (IAM): send a rejected or revoked pair back to pending, to be verified again",
    responses={200: _json_content(PairRecord, "The pending record"), **_ERRORS},
)
def approve(pair: str) -> Response[str]:
    return _admin_change(submissions.approve, pair, "WhitelistApproved")


def _admin_change(change: Callable[..., PairRecord], pair: str, metric: str) -> Response[str]:
    """An admin status change: the caller checked first, counted once done, answered with the record."""
    caller = _admin_caller()
    record = change(pair, by=caller, settings=get_settings(), now=now_ms())
    request_metrics.add(metric)
    return record_response(record)


# --- errors: one place maps every domain error to its HTTP answer --------------------------------


# Refusals answered with their status, a code and the error's own message (which names the value).
PLAIN_REFUSALS: dict[type[Exception], tuple[int, str]] = {
    InvalidPairError: (400, "invalid_pair"),
    InvalidRequestError: (400, "invalid_request"),
    PayloadTooLargeError: (413, "payload_too_large"),
    UnsupportedMediaTypeError: (415, "unsupported_media_type"),
    PairNotFoundError: (404, "not_found"),
    NotAuthorisedError: (403, "forbidden"),
}


def _plain_refusal(status: int, code: str) -> Callable[[Exception], Response[str]]:
    return lambda exc: to_response(error_response(status, code, str(exc)))


for _error, (_status, _code) in PLAIN_REFUSALS.items():
    app.exception_handler(_error)(_plain_refusal(_status, _code))


@app.exception_handler(SourceLimitError)
def source_limit(exc: SourceLimitError) -> Response[str]:
    limit = get_settings().whitelist_max_per_source_per_hour
    retry_after = _HOUR_S - (now_ms() // 1000) % _HOUR_S
    message = f"address {exc} has already submitted {limit} pairs this hour; try again in {retry_after} s"
    request_metrics.add("WhitelistRefusedByCap")
    answer = error_response(429, "too_many_submissions", message)
    return to_response(
        ApiResponse(answer.status, answer.body, {**answer.headers, "Retry-After": str(retry_after)})
    )


@app.exception_handler(PendingCapReachedError)
def pending_cap(exc: PendingCapReachedError) -> Response[str]:
    cap = get_settings().whitelist_max_pending
    waiting = f"{cap} pairs are already waiting (WHITELIST_MAX_PENDING)"
    return _refused_by_cap(
        "too_many_pending",
        f"cannot queue {exc} for verification: {waiting}; try again once they are verified",
    )


def _refused_by_cap(code: str, message: str) -> Response[str]:
    request_metrics.add("WhitelistRefusedByCap")
    return to_response(error_response(429, code, message))


# DynamoDB busy, throttling or failing: nothing was stored, and the same request may simply be sent
# again (a submission is idempotent, an admin change conditional).
REGISTRY_RETRY_AFTER_S = 2


@app.exception_handler(UnavailableError)
def registry_busy(exc: UnavailableError) -> Response[str]:
    logger.warning("registry unavailable", error=exc.cause)
    message = (
        f"the pair registry is busy ({exc.cause}); nothing was changed, retry in {REGISTRY_RETRY_AFTER_S} s"
    )
    answer = error_response(503, "registry_busy", message)
    headers = {**answer.headers, "Retry-After": str(REGISTRY_RETRY_AFTER_S)}
    return to_response(ApiResponse(answer.status, answer.body, headers))


@app.exception_handler(ActiveCapReachedError)
def active_cap(exc: ActiveCapReachedError) -> Response[str]:
    cap = get_settings().whitelist_max_active
    taken = f"{cap} pairs are served or pending already (WHITELIST_MAX_ACTIVE)"
    return _refused_by_cap("too_many_active", f"cannot take {exc}: {taken}; a pair must be revoked first")


@app.exception_handler(StatusConflictError)
def conflict(exc: StatusConflictError) -> Response[str]:
    return to_response(error_response(409, "status_conflict", f"status change refused: {exc}"))


add_common_error_routes(app)


def describe() -> dict[str, Any]:
    """These routes' OpenAPI description, generated from the code above. The prices function serves
    it within the API's one description (it cannot import this package): ``make openapi`` writes it
    to the shared layer, and a test keeps the two the same."""
    schema = app.get_openapi_schema(title="Market data whitelist API", version="1.0.0")
    described: dict[str, Any] = schema.model_dump(mode="json", by_alias=True, exclude_none=True)
    # The routes read their body and query themselves (one parse, errors named in the answer):
    # what they take is added here, as the code enforces it.
    described["paths"][BASE]["post"]["requestBody"] = {
        "required": True,
        "content": {JSON: {"schema": {
            "type": "object", "additionalProperties": False, "required": ["pair"],
            "properties": {"pair": {"type": "string", "maxLength": 41, "example": "SOL/USDT",
                                    "pattern": "^ *[A-Za-z0-9]{1,20}/[A-Za-z0-9]{1,20} *$"}},
        }}},
    }  # fmt: skip
    described["paths"][BASE]["get"]["parameters"] = [
        {"name": "status", "in": "query", "required": False, "schema": {"type": "string", "enum": list(ALL)}},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "string", "pattern": f"^0*([1-9]|[1-9][0-9]|{submissions.MAX_PAGE})$"},
         "description": f"records per page, 1 to {submissions.MAX_PAGE} (default {submissions.MAX_PAGE})"},
        {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "the previous page's nextCursor, as it came"},
    ]  # fmt: skip
    return described


@traced
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    started = time.perf_counter()
    response: dict[str, Any] = app.resolve(event, context)
    latency_ms = (time.perf_counter() - started) * 1000
    request_metrics.record_response(response["statusCode"], latency_ms)
    logger.debug("request served", route=event.get("routeKey"), status=response["statusCode"])
    return response
