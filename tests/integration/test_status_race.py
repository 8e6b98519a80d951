"""A status change that loses a race is retried on the new status when that one allows it."""

from __future__ import annotations

import boto3
import pytest

from market_data import store
from market_data.clock import now_ms
from market_data.errors import StatusConflictError
from market_data.statuses import PENDING
from market_data.store import registry
from market_data.store.registry import COUNTER_PK


@pytest.fixture
def table(service_env: dict[str, str]) -> object:
    return boto3.resource("dynamodb", endpoint_url=service_env["DYNAMODB_ENDPOINT_URL"]).Table(
        service_env["MARKET_DATA_TABLE_NAME"]
    )


def read_pending_while_it_becomes(table: object, monkeypatch: pytest.MonkeyPatch, status: str) -> None:
    """ADA/USDT submitted, then changed to ``status``; the next status change's first read of it
    still sees it pending (it read just before the change landed), as in a real race."""
    store.create_submission(
        table, "ADA/USDT", source="192.0.2.1", now_ms=now_ms(), max_pending=100, max_per_source=100
    )
    stale = store.get_record(table, "ADA/USDT")
    store.change_status(
        table, "ADA/USDT", to=status, reason="by the fetcher", now_ms=now_ms(), allowed_from=["pending"]
    )
    real_get = registry.get_record
    reads = iter([stale])
    # Where change_status looks records up: the race is between its read and its conditional write.
    monkeypatch.setattr(registry, "get_record", lambda t, p: next(reads, None) or real_get(t, p))


def test_a_revoke_racing_the_fetchers_activation_still_revokes(
    table: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pending pair that the admin reads as pending, while the fetcher activates it
    read_pending_while_it_becomes(table, monkeypatch, "active")

    # When the admin's revoke (allowed from any status but revoked) lands on the changed record
    record = store.change_status(
        table, "ADA/USDT", to="revoked", reason="revoked by an operator", now_ms=now_ms(),
        allowed_from=["pending", "active", "rejected", "suspended"],
    )  # fmt: skip

    # Then it is revoked, from active, and the pending count stays right
    assert record.status == "revoked" and record.lastStatusChange is not None
    assert record.lastStatusChange.from_status == "active"
    counter = table.get_item(Key={"pk": COUNTER_PK, "sk": PENDING})["Item"]
    assert int(counter["count"]) == 0


def test_a_change_the_new_status_does_not_allow_is_refused(
    table: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_pending_while_it_becomes(table, monkeypatch, "rejected")

    with pytest.raises(StatusConflictError, match="rejected"):
        store.change_status(
            table, "ADA/USDT", to="active", reason="x", now_ms=now_ms(), allowed_from=["pending"]
        )
