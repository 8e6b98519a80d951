"""Whitelist logic: record submissions, list and read records, admin revoke and approve.

Nothing here calls an exchange: a submission is only recorded as pending; the fetcher verifies it
with the exchange calls it already makes. Refusals are raised as ``market_data.errors``' domain
errors, and results returned as records: the handler decides every HTTP answer in one place.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from market_data import store
from market_data.config import Settings
from market_data.errors import (
    ActiveCapReachedError,
    InvalidPairError,
    InvalidRequestError,
    PairNotFoundError,
    PayloadTooLargeError,
)
from market_data.models import PairRecord, SubmitPairRequest
from market_data.observability import logger
from market_data.pairs import normalise_pair
from market_data.statuses import ALL, PENDING, REJECTED, REVOKED, SERVED

MAX_BODY_BYTES = 1024
# Approve sends a pair back to verification; only a refused or revoked pair needs that.
APPROVABLE_FROM = (REJECTED, REVOKED)
REVOCABLE_FROM = tuple(status for status in ALL if status != REVOKED)


@dataclass(frozen=True)
class Submission:
    record: PairRecord
    created: bool  # False: the pair was known already (a retry, or submitted by someone else)


def parse_submission(body: bytes) -> str:
    """The normalised pair of a submission body, or raise naming what is wrong with it."""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(
            f"request body is {len(body)} bytes; at most {MAX_BODY_BYTES} are accepted"
        )
    repeated = _repeated_key(body)
    if repeated is not None:  # JSON allows it, and parsers disagree on which one wins
        raise InvalidRequestError(f"field {repeated!r} appears twice in the request body; send it once")
    try:
        request = SubmitPairRequest.model_validate_json(body or b"")
    except ValidationError as exc:
        raise InvalidRequestError(_describe(exc)) from None
    return normalise_pair(request.pair)


def _repeated_key(body: bytes) -> str | None:
    """The first key an object of ``body`` holds twice; None for a body that is not JSON (its
    parse error is told as such)."""
    repeated: list[str] = []

    def keep_first_repeat(items: list[tuple[str, object]]) -> dict[str, object]:
        keys = [key for key, _ in items]
        repeated.extend(key for index, key in enumerate(keys) if key in keys[:index])
        return dict(items)

    try:
        json.loads(body or b"", object_pairs_hook=keep_first_repeat)
    except ValueError:
        return None
    return repeated[0] if repeated else None


def _describe(exc: ValidationError) -> str:
    """pydantic's first error, as one sentence naming the field and the value."""
    error = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind.startswith("json_"):
        return f'request body is not JSON ({error["msg"]}); expected {{"pair": "SOL/USDT"}}'
    if kind == "model_type":
        return f'request body must be a JSON object such as {{"pair": "SOL/USDT"}}, got {error["input"]!r}'
    if kind == "extra_forbidden":
        return f'unexpected field {field!r}; the body takes only "pair"'
    if kind == "missing":
        return 'field "pair" is required, e.g. {"pair": "SOL/USDT"}'
    return f"invalid {field} {error['input']!r}: {error['msg']}"


def client_address(source_ip: str, headers: Mapping[str, str], *, cdn_secret: str) -> str:
    """Who is submitting, for the per-address limit. Behind the CloudFront distribution every
    request connects from an edge, so the address CloudFront saw is taken, but only from a request
    carrying the distribution's secret: a client cannot name its own address to dodge the limit."""
    lowered = {name.lower(): value for name, value in headers.items()}
    viewer = lowered.get("cloudfront-viewer-address", "")
    if cdn_secret and viewer and hmac.compare_digest(lowered.get("x-origin-verify", ""), cdn_secret):
        return viewer.rsplit(":", 1)[0].strip("[]")  # "198.51.100.10:46532", IPv6 without brackets
    return source_ip


def submit(body: bytes, *, source_ip: str, settings: Settings, now: int) -> Submission:
    """Record the pair as pending, or return the record that already exists (not counted)."""
    pair = parse_submission(body)
    table = store.get_table(settings)
    existing = store.get_record(table, pair)
    if existing is not None:  # a retry, or a pair already known: answered, and not counted
        return Submission(existing, created=False)
    # Served and pending pairs together stay under the cap the fetcher verifies against (the
    # fetcher's own check is the exact one: this tells the submitter early, in words).
    taken = sum(1 for record in store.list_registry(table) if record.status in (*SERVED, PENDING))
    if taken >= settings.whitelist_max_active:
        raise ActiveCapReachedError(pair)
    record, created = store.create_submission(
        table,
        pair,
        source=source_ip,
        now_ms=now,
        max_pending=settings.whitelist_max_pending,
        max_per_source=settings.whitelist_max_per_source_per_hour,
    )
    if created:
        logger.info("pair submitted", pair=pair)
        logger.debug("submission source", pair=pair, source=source_ip)  # an address is personal data
    return Submission(record, created)


@dataclass(frozen=True)
class Page:
    records: list[PairRecord]
    next_cursor: str | None  # opaque: where the next page starts; None on the last page


def list_pairs(
    status: str | None, *, settings: Settings, limit: str | None = None, cursor: str | None = None
) -> Page:
    """One page of records in pair order: at most ``limit`` (default and most: MAX_PAGE)."""
    if status is not None and status not in ALL:
        raise InvalidRequestError(f"invalid status {status!r}: expected one of {', '.join(ALL)}")
    size = _page_size(limit)
    after = _cursor_pair(cursor) if cursor is not None else None
    records, last = store.list_registry_page(
        store.get_table(settings), status=status, limit=size, after=after
    )
    return Page(records, _cursor(last) if last is not None else None)


MAX_PAGE = 100


def _page_size(raw: str | None) -> int:
    if raw is None:
        return MAX_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise InvalidRequestError(f"invalid limit {raw!r}: expected a whole number from 1 to {MAX_PAGE}")
    return int(raw)


def _cursor(pair: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": pair}).encode()).decode().rstrip("=")


def _cursor_pair(raw: str) -> str:
    """The pair a cursor continues after; a cursor this service did not give is refused, named."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        return normalise_pair(decoded["after"])
    except (ValueError, TypeError, KeyError, InvalidPairError):
        raise InvalidRequestError(
            f"invalid cursor {raw!r}: pass the nextCursor of the previous page as it came"
        ) from None


def path_pair(raw: str) -> str:
    """``SOL-USDT`` (the form in paths, where ``/`` cannot appear) to ``SOL/USDT``."""
    base, dash, quote = raw.partition("-")
    try:
        if not dash:
            raise InvalidPairError(raw)
        return normalise_pair(f"{base}/{quote}")
    except InvalidPairError:
        raise InvalidPairError(
            f"invalid pair {raw!r}: expected BASE-QUOTE in paths with letters and digits, e.g. SOL-USDT"
        ) from None


def get_pair(raw: str, *, settings: Settings) -> PairRecord:
    pair = path_pair(raw)
    record = store.get_record(store.get_table(settings), pair)
    if record is None:
        raise PairNotFoundError(f"pair {pair} has never been submitted")
    return record


def revoke(raw: str, *, by: str, settings: Settings, now: int) -> PairRecord:
    """Admin: stop serving a pair from the next slot; the record is kept, with the change and who made it."""
    return _change(raw, to=REVOKED, allowed_from=REVOCABLE_FROM, reason="revoked by an administrator",
                   by=by, settings=settings, now=now)  # fmt: skip


def approve(raw: str, *, by: str, settings: Settings, now: int) -> PairRecord:
    """Admin: send a rejected or revoked pair back to pending, so the fetcher verifies it again."""
    return _change(raw, to=PENDING, allowed_from=APPROVABLE_FROM,
                   reason="approved by an administrator: waiting for verification against the exchange",
                   by=by, settings=settings, now=now)  # fmt: skip


def _change(
    raw: str, *, to: str, allowed_from: tuple[str, ...], reason: str, by: str, settings: Settings, now: int
) -> PairRecord:
    pair = path_pair(raw)
    record = store.change_status(
        store.get_table(settings), pair, to=to, reason=reason, now_ms=now,
        allowed_from=allowed_from, max_pending=settings.whitelist_max_pending, by=by,
    )  # fmt: skip
    logger.info("pair status changed by an administrator", pair=pair, to=to, by=by)
    return record


def admitted(caller: str, principals: tuple[str, ...]) -> bool:
    """Whether ``caller`` (the ARN API Gateway's IAM check found) is one of the admin principals: the
    ARN itself, or a session of a role named (``sts::...:assumed-role/NAME/session`` for
    ``iam::...:role/NAME``)."""
    if caller in principals:
        return True
    partition, _, rest = caller.partition(":sts::")
    account, _, session = rest.partition(":assumed-role/")
    role = session.rsplit("/", 1)[0] if "/" in session else ""
    return bool(role) and f"{partition}:iam::{account}:role/{role}" in principals
