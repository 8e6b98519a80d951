"""The whitelist handler in-process, fed with events/whitelist_*.json, against moto over HTTP."""

from __future__ import annotations

import copy
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from local_stack.lambda_context import LocalLambdaContext
from market_data import store
from market_data.clock import now_ms
from market_data.config import get_settings
from tests.support import failing_transactions, load_event
from whitelist.handler import app, lambda_handler

pytestmark = pytest.mark.usefixtures("service_env")


def invoke(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = lambda_handler(event, LocalLambdaContext("whitelist", 6))
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


def submit_event(
    body: str | None = '{"pair": "SOL/USDT"}', *, source_ip: str = "203.0.113.7"
) -> dict[str, Any]:
    event = copy.deepcopy(load_event("whitelist_submit.json"))
    if body is None:
        event.pop("body")
    else:
        event["body"] = body
    event["requestContext"]["http"]["sourceIp"] = source_ip
    return event


def submit(pair: str, *, source_ip: str = "203.0.113.7") -> tuple[int, dict[str, Any]]:
    return invoke(submit_event(json.dumps({"pair": pair}), source_ip=source_ip))


def pair_event(name: str, pair: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event(name))
    event["pathParameters"] = {"pair": pair}
    for holder in (event, event["requestContext"]["http"]):
        key = "rawPath" if holder is event else "path"
        holder[key] = holder[key].replace("SOL-USDT", pair)
    return event


def list_event(status: str | None) -> dict[str, Any]:
    event = copy.deepcopy(load_event("whitelist_list.json"))
    if status is None:
        event.pop("queryStringParameters")
        event["rawQueryString"] = ""
    else:
        event["queryStringParameters"] = {"status": status}
        event["rawQueryString"] = f"status={status}"
    return event


def set_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


# --- submissions -----------------------------------------------------------------------------------


def test_a_new_pair_is_202_pending_and_a_second_submission_is_200_with_the_record() -> None:
    # Given a pair never submitted
    status, body = invoke(load_event("whitelist_submit.json"))

    # Then it is recorded as pending
    assert status == 202
    assert set(body) == {"pair", "status", "submittedAt"}
    assert (body["pair"], body["status"]) == ("SOL/USDT", "pending")
    assert abs(body["submittedAt"] - now_ms()) < 60_000

    # When it is submitted again (lower case is the same pair)
    status, again = submit("sol/usdt")

    # Then the retry is safe: 200 with the full current record
    assert status == 200
    assert again["pair"] == "SOL/USDT" and again["status"] == "pending"
    assert again["submittedAt"] == body["submittedAt"]
    assert again["lastStatusChange"] == {
        "from": None, "to": "pending", "at": body["submittedAt"], "reason": "submitted",
    }  # fmt: skip
    assert {"reason", "exchange", "symbol", "verifiedAt", "origin"} <= set(again)


def test_a_known_pair_of_any_status_is_200_with_its_record() -> None:
    # BTC/USDT is seeded as active from TRADING_PAIRS
    table = store.get_table(get_settings())
    store.seed_registry(table, ["BTC/USDT"], now_ms=now_ms())

    status, body = submit("BTC/USDT")

    assert status == 200
    assert (body["status"], body["origin"]) == ("active", "seed")


def test_ten_parallel_submissions_of_one_pair_leave_one_record_and_one_202() -> None:
    # Given ten clients submitting the same new pair at once, from different addresses
    events = [submit_event('{"pair": "AVAX/USDT"}', source_ip=f"198.51.100.{i}") for i in range(10)]

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = sorted(status for status, _ in pool.map(invoke, events))

    # Then exactly one created it; the others got the existing record
    assert statuses == [200] * 9 + [202]
    records = store.list_registry(store.get_table(get_settings()))
    assert [record.pair for record in records if record.pair == "AVAX/USDT"] == ["AVAX/USDT"]


def test_parallel_duplicates_from_one_address_never_count_against_it_nor_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an address allowed three submissions an hour, sending one new pair ten times at once
    set_env(monkeypatch, WHITELIST_MAX_PER_SOURCE_PER_HOUR="3")
    events = [submit_event('{"pair": "DOT/USDT"}', source_ip="192.0.2.30") for _ in range(10)]

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = sorted(status for status, _ in pool.map(invoke, events))

    # Then one created it and every other got the record: a duplicate is never refused
    assert statuses == [200] * 9 + [202]
    # and only the one that created it counted: two more new pairs still fit this hour
    assert submit("KSM/USDT", source_ip="192.0.2.30")[0] == 202
    assert submit("ATOM/USDT", source_ip="192.0.2.30")[0] == 202
    assert submit("NEAR/USDT", source_ip="192.0.2.30")[0] == 429


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ('{"pair": "SOLUSDT"}', "'SOLUSDT'"),
        ('{"pair": "SOL/US-DT"}', "'SOL/US-DT'"),
        ('{"pair": "' + "A" * 30 + '/USDT"}', "A" * 30),
        ("pair=SOL/USDT", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"pair": "SOL/USDT", "note": "x"}', "'note'"),
        ("{}", '"pair" is required'),
        ('{"pair": 5}', "5"),
    ],
)
def test_a_malformed_body_or_pair_is_400_naming_the_value(body: str, named: str) -> None:
    status, answer = invoke(submit_event(body))

    assert status == 400
    assert set(answer) == {"error", "message"}
    assert named in answer["message"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_submission_that_is_not_declared_json_is_415(content_type: str | None) -> None:
    # A cross-site form or text/plain post (no CORS preflight) must not submit for a page's visitors.
    event = submit_event()
    if content_type is None:
        del event["headers"]["content-type"]
    else:
        event["headers"]["content-type"] = content_type

    status, answer = invoke(event)

    assert status == 415 and answer["error"] == "unsupported_media_type"
    assert "application/json" in answer["message"]
    assert store.get_record(store.get_table(get_settings()), "SOL/USDT") is None
    event["headers"]["content-type"] = "application/json; charset=utf-8"
    assert invoke(event)[0] == 202


def test_a_body_with_a_key_twice_is_400_naming_it() -> None:
    status, answer = invoke(submit_event('{"pair": "SOL/USDT", "pair": "ETH/USDT"}'))

    assert status == 400 and "'pair'" in answer["message"] and "twice" in answer["message"]
    assert store.list_registry(store.get_table(get_settings())) == []


def test_past_the_cap_on_served_pairs_a_submission_is_429_saying_why(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given two pairs served, one pending, and a cap of four
    set_env(monkeypatch, WHITELIST_MAX_ACTIVE="4")
    store.seed_registry(store.get_table(get_settings()), ["BTC/USDT", "ETH/USDT"], now_ms=now_ms())
    assert submit("SOL/USDT")[0] == 202
    assert submit("ADA/USDT")[0] == 202  # the fourth: served and pending together reach the cap

    status, answer = submit("DOT/USDT")

    assert status == 429 and answer["error"] == "too_many_active"
    assert "WHITELIST_MAX_ACTIVE" in answer["message"] and "4" in answer["message"]
    assert submit("SOL/USDT")[0] == 200  # a known pair is still answered


def test_a_missing_body_is_400() -> None:
    status, answer = invoke(submit_event(None))
    assert status == 400 and "not JSON" in answer["message"]


def test_a_body_over_1024_bytes_is_413() -> None:
    body = json.dumps({"pair": "SOL/USDT", "padding": "x" * 1100})

    status, answer = invoke(submit_event(body))

    assert status == 413
    assert set(answer) == {"error", "message"} and "1024" in answer["message"]


def test_the_eleventh_submission_from_one_address_in_an_hour_is_429(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given one address that has submitted ten pairs this hour
    set_env(monkeypatch, WHITELIST_MAX_PER_SOURCE_PER_HOUR="10")
    for i in range(10):
        assert submit(f"C{i}/USDT", source_ip="192.0.2.10")[0] == 202

    # When it submits an eleventh
    status, answer = submit("C10/USDT", source_ip="192.0.2.10")

    # Then it is refused with a message saying why; another address is still served
    assert status == 429
    assert answer["error"] == "too_many_submissions"
    assert "192.0.2.10" in answer["message"] and "10" in answer["message"]
    assert store.get_record(store.get_table(get_settings()), "C10/USDT") is None
    assert submit("C10/USDT", source_ip="192.0.2.11")[0] == 202


def test_retrying_a_known_pair_is_answered_and_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, WHITELIST_MAX_PER_SOURCE_PER_HOUR="2")
    assert submit("SOL/USDT", source_ip="192.0.2.20")[0] == 202

    retries = [submit("SOL/USDT", source_ip="192.0.2.20")[0] for _ in range(5)]

    assert retries == [200] * 5
    assert submit("ADA/USDT", source_ip="192.0.2.20")[0] == 202  # the second new one still fits


def test_submissions_over_the_pending_cap_are_429(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a cap of two pending pairs, both taken
    set_env(monkeypatch, WHITELIST_MAX_PENDING="2")
    assert submit("A1/USDT")[0] == 202
    assert submit("A2/USDT")[0] == 202

    # When a third pair is submitted
    status, answer = submit("A3/USDT")

    # Then it is refused, and nothing is recorded; a known pair is still answered 200
    assert status == 429
    assert answer["error"] == "too_many_pending" and "WHITELIST_MAX_PENDING" in answer["message"]
    assert store.get_record(store.get_table(get_settings()), "A3/USDT") is None
    assert submit("A1/USDT")[0] == 200


@pytest.mark.parametrize("code", ["TransactionConflict", "ThrottlingError"])
def test_a_registry_busy_with_another_change_answers_503_with_retry_after_never_500(code: str) -> None:
    # Given DynamoDB cancelling the next changes for a reason that says nothing about the data
    assert submit("SOL/USDT")[0] == 202
    stop = failing_transactions(store.get_table(get_settings()), code, times=2)

    # When a submitter and an administrator change the registry
    submitted = lambda_handler(submit_event('{"pair": "ADA/USDT"}'), LocalLambdaContext("whitelist", 6))
    revoked = lambda_handler(
        pair_event("whitelist_revoke.json", "SOL-USDT"), LocalLambdaContext("whitelist", 6)
    )
    stop()

    # Then both are told to retry shortly, and nothing was stored or counted; a retry succeeds
    for response in (submitted, revoked):
        assert response["statusCode"] == 503, response
        assert int(response["headers"]["Retry-After"]) >= 1
        assert json.loads(response["body"])["error"] == "registry_busy"
    assert store.get_record(store.get_table(get_settings()), "ADA/USDT") is None
    assert submit("ADA/USDT")[0] == 202
    assert invoke(pair_event("whitelist_revoke.json", "SOL-USDT"))[1]["status"] == "revoked"


# --- reading ---------------------------------------------------------------------------------------


def test_list_with_and_without_a_status_filter() -> None:
    table = store.get_table(get_settings())
    store.seed_registry(table, ["BTC/USDT"], now_ms=now_ms())
    submit("SOL/USDT")

    status, everything = invoke(list_event(None))
    assert status == 200
    assert sorted(record["pair"] for record in everything["pairs"]) == ["BTC/USDT", "SOL/USDT"]

    status, pending = invoke(load_event("whitelist_list.json"))  # ?status=pending
    assert status == 200
    assert [(r["pair"], r["status"]) for r in pending["pairs"]] == [("SOL/USDT", "pending")]

    assert invoke(list_event("active"))[1]["pairs"][0]["pair"] == "BTC/USDT"


def page_event(**query: str) -> dict[str, Any]:
    event = list_event(None)
    event["queryStringParameters"] = query
    event["rawQueryString"] = "&".join(f"{name}={value}" for name, value in query.items())
    return event


def test_the_list_comes_in_pages_of_at_most_limit_records_with_an_opaque_cursor() -> None:
    # Given seven pairs in the registry
    pairs = [f"P{i}/USDT" for i in range(7)]
    store.seed_registry(store.get_table(get_settings()), pairs, now_ms=now_ms())

    # When a client reads them three at a time, following the cursor
    seen: list[str] = []
    query = {"limit": "3"}
    pages = 0
    while True:
        status, page = invoke(page_event(**query))
        assert status == 200 and len(page["pairs"]) <= 3
        seen += [record["pair"] for record in page["pairs"]]
        pages += 1
        if page.get("nextCursor") is None:
            break
        query = {"limit": "3", "cursor": page["nextCursor"]}

    # Then every pair comes once, in three pages; without a limit, at most 100 come at once
    assert sorted(seen) == sorted(pairs) and pages == 3
    assert sorted(record["pair"] for record in invoke(list_event(None))[1]["pairs"]) == sorted(pairs)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"limit": "0"}, "'0'"),
        ({"limit": "101"}, "'101'"),
        ({"limit": "ten"}, "'ten'"),
        ({"cursor": "nope"}, "'nope'"),
    ],
)
def test_a_bad_limit_or_cursor_is_400_naming_it(query: dict[str, str], named: str) -> None:
    status, answer = invoke(page_event(**query))
    assert status == 400 and named in answer["message"]


def test_list_with_an_unknown_status_is_400_naming_it() -> None:
    status, answer = invoke(list_event("listed"))
    assert status == 400 and "'listed'" in answer["message"]


def test_get_one_record_by_base_dash_quote() -> None:
    submit("SOL/USDT")

    status, record = invoke(load_event("whitelist_get.json"))  # /whitelist/SOL-USDT

    assert status == 200
    assert (record["pair"], record["status"]) == ("SOL/USDT", "pending")
    assert invoke(pair_event("whitelist_get.json", "sol-usdt"))[0] == 200


def test_get_a_pair_never_submitted_is_404_and_a_malformed_one_400() -> None:
    status, answer = invoke(pair_event("whitelist_get.json", "DOGE-USDT"))
    assert status == 404 and set(answer) == {"error", "message"} and "DOGE/USDT" in answer["message"]

    status, answer = invoke(pair_event("whitelist_get.json", "SOLUSDT"))
    assert status == 400 and "'SOLUSDT'" in answer["message"]


# --- admin -----------------------------------------------------------------------------------------


def test_revoke_keeps_the_record_with_status_revoked_and_the_change() -> None:
    # Given a pending pair
    submit("SOL/USDT")

    # When an administrator revokes it
    status, record = invoke(load_event("whitelist_revoke.json"))

    # Then the record is kept, revoked, with the last change recorded
    assert status == 200
    assert record["status"] == "revoked"
    assert record["lastStatusChange"]["from"] == "pending"
    assert record["lastStatusChange"]["to"] == "revoked"
    assert invoke(load_event("whitelist_get.json"))[1]["status"] == "revoked"
    # Revoking twice is a conflict, revoking an unknown pair a 404
    assert invoke(load_event("whitelist_revoke.json"))[0] == 409
    assert invoke(pair_event("whitelist_revoke.json", "DOGE-USDT"))[0] == 404


ADMIN = "arn:aws:iam::123456789012:user/market-data-admin"  # the caller in events/whitelist_*.json


def as_caller(name: str, arn: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event(name))
    event["requestContext"]["authorizer"]["iam"]["userArn"] = arn
    return event


def test_only_the_named_admin_principals_may_change_a_pair_and_the_caller_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    from market_data.observability import logger

    # Given admin principals named by ARN (a user) and by role (any session of it)
    role = "arn:aws:iam::123456789012:role/market-data-operators"
    set_env(monkeypatch, ADMIN_PRINCIPALS=json.dumps([ADMIN, role]))
    submit("SOL/USDT")

    # When another IAM principal, allowed to invoke the API, tries an admin route
    intruder = "arn:aws:iam::123456789012:user/someone-else"
    status, answer = invoke(as_caller("whitelist_revoke.json", intruder))

    # Then it is refused, naming the caller, and nothing changes
    assert status == 403 and intruder in answer["message"]
    assert invoke(load_event("whitelist_get.json"))[1]["status"] == "pending"

    # A named principal's change is made, logged with its ARN, and kept on the record
    stream, level = io.StringIO(), logger.log_level
    monkeypatch.setattr(logger.registered_handler, "stream", stream)
    logger.setLevel("INFO")
    try:
        status, record = invoke(load_event("whitelist_revoke.json"))
    finally:
        logger.setLevel(level)
    logged = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    assert status == 200 and record["lastStatusChange"]["by"] == ADMIN
    assert {"message": "pair status changed by an administrator", "by": ADMIN}.items() <= logged[-1].items()
    session = "arn:aws:sts::123456789012:assumed-role/market-data-operators/alice"
    status, record = invoke(as_caller("whitelist_approve.json", session))
    assert status == 200 and record["lastStatusChange"]["by"] == session


def test_with_no_admin_principals_named_every_admin_route_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, ADMIN_PRINCIPALS="[]")
    submit("SOL/USDT")
    status, answer = invoke(load_event("whitelist_revoke.json"))
    assert status == 403 and "ADMIN_PRINCIPALS" in answer["message"]


def test_approve_sends_a_revoked_pair_back_to_pending_and_refuses_a_pending_one() -> None:
    submit("SOL/USDT")

    # A pending pair cannot be approved: it is waiting for verification already
    status, answer = invoke(load_event("whitelist_approve.json"))
    assert status == 409 and set(answer) == {"error", "message"} and "pending" in answer["message"]

    # A revoked one goes back to pending, to be verified again
    invoke(load_event("whitelist_revoke.json"))
    status, record = invoke(load_event("whitelist_approve.json"))
    assert status == 200
    assert record["status"] == "pending"
    assert (record["lastStatusChange"]["from"], record["lastStatusChange"]["to"]) == ("revoked", "pending")


def test_approve_over_the_pending_cap_is_429(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, WHITELIST_MAX_PENDING="1")
    submit("SOL/USDT")
    invoke(load_event("whitelist_revoke.json"))
    submit("ADA/USDT")  # takes the one pending place

    status, answer = invoke(load_event("whitelist_approve.json"))

    assert status == 429 and answer["error"] == "too_many_pending"


@pytest.mark.parametrize("name", ["whitelist_revoke.json", "whitelist_approve.json"])
def test_an_admin_event_without_iam_authorization_is_403(name: str) -> None:
    submit("SOL/USDT")
    event = copy.deepcopy(load_event(name))
    del event["requestContext"]["authorizer"]

    status, answer = invoke(event)

    assert status == 403 and set(answer) == {"error", "message"}
    assert invoke(load_event("whitelist_get.json"))[1]["status"] == "pending"  # nothing changed


def test_the_openapi_description_names_every_route() -> None:
    schema = app.get_openapi_schema(title="Market data whitelist API", version="1.0.0")
    paths = schema.model_dump(mode="json", by_alias=True, exclude_none=True)["paths"]
    assert set(paths["/api/market-data/whitelist"]) == {"get", "post"}
    assert set(paths["/api/market-data/whitelist/{pair}"]) == {"get", "delete"}
    assert "post" in paths["/api/market-data/whitelist/{pair}/approve"]


def test_the_layers_copy_of_the_whitelist_description_is_the_codes() -> None:
    from pathlib import Path

    import market_data
    from whitelist.handler import describe

    committed = json.loads(Path(market_data.__file__).with_name("whitelist_openapi.json").read_text())
    assert committed == describe(), "the whitelist routes changed: run make openapi"


def test_behind_the_distribution_each_client_keeps_its_own_limit_and_cannot_name_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the CDN on: every request connects from an edge address, the client's in CloudFront's header
    set_env(monkeypatch, WHITELIST_MAX_PER_SOURCE_PER_HOUR="2", CDN_ORIGIN_SECRET="0f5c2a4e-stack-id")
    edge = "130.176.0.1"

    def through_cdn(pair: str, client: str, secret: str = "0f5c2a4e-stack-id") -> int:
        event = submit_event(json.dumps({"pair": pair}), source_ip=edge)
        event["headers"] = {
            **event["headers"],
            "cloudfront-viewer-address": f"{client}:46532",
            "x-origin-verify": secret,
        }
        return invoke(event)[0]

    # Two clients behind one edge each get their own two submissions an hour
    assert [through_cdn(p, "198.51.100.10") for p in ("A1/USDT", "A2/USDT", "A3/USDT")] == [202, 202, 429]
    assert [through_cdn(p, "2001:db8::7") for p in ("B1/USDT", "B2/USDT")] == [202, 202]
    # and a request without the distribution's secret is limited by its own connecting address,
    # whatever address it names: naming the client whose hour is spent changes nothing.
    assert through_cdn("C1/USDT", "198.51.100.10", secret="guessed") == 202
    assert through_cdn("C2/USDT", "198.51.100.10", secret="") == 202
    assert through_cdn("C3/USDT", "198.51.100.10", secret="guessed") == 429  # the edge's own two
