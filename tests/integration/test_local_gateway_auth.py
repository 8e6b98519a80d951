"""The local HTTP API's stand-in for IAM on the admin routes, with the real whitelist handler behind it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from local_stack.gateway import LocalHttpApi
from local_stack.template import http_routes, load_template

TOKEN = "local-admin-token-0123456789abcd"
REVOKE = "/api/market-data/whitelist/SOL-USDT"


def call(api: LocalHttpApi, method: str, target: str, **headers: str) -> tuple[int, dict[str, str], Any]:
    body = b'{"pair": "SOL/USDT"}' if method == "POST" and target.endswith("whitelist") else b""
    if body:
        headers = {"content-type": "application/json", **headers}
    status, response_headers, payload = api.handle(method, target, headers, body, "127.0.0.1")
    return status, response_headers, json.loads(payload) if payload else None


@pytest.fixture
def submitted(service_env: dict[str, str]) -> None:
    api = LocalHttpApi(http_routes(load_template()), cors_origins=["*"], admin_token=TOKEN)
    assert call(api, "POST", "/api/market-data/whitelist")[0] == 202


def gateway(token: str | None) -> LocalHttpApi:
    return LocalHttpApi(http_routes(load_template()), cors_origins=["*"], admin_token=token)


@pytest.mark.usefixtures("submitted")
def test_an_admin_route_without_credentials_is_401() -> None:
    status, _, body = call(gateway(TOKEN), "DELETE", REVOKE)
    assert (status, body) == (401, {"message": "Unauthorized"})


@pytest.mark.usefixtures("submitted")
@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}x", "Bearer ", f"Basic {TOKEN}", "wrong"])
def test_an_admin_route_with_a_wrong_token_is_403(authorization: str) -> None:
    status, _, body = call(gateway(TOKEN), "DELETE", REVOKE, authorization=authorization)
    assert (status, body) == (403, {"message": "Forbidden"})


@pytest.mark.usefixtures("submitted")
@pytest.mark.parametrize("token", [None, ""])
def test_admin_routes_refuse_everyone_when_admin_token_is_unset(token: str | None) -> None:
    status, _, body = call(gateway(token), "DELETE", REVOKE, authorization="Bearer ")
    assert (status, body) == (403, {"message": "Forbidden"})
    status, _, body = call(gateway(token), "POST", REVOKE + "/approve", authorization=f"Bearer {TOKEN}")
    assert (status, body) == (403, {"message": "Forbidden"})


@pytest.mark.usefixtures("submitted")
def test_the_right_token_reaches_the_handler_as_an_iam_caller() -> None:
    api = gateway(TOKEN)

    status, _, record = call(api, "DELETE", REVOKE, authorization=f"Bearer {TOKEN}")
    assert status == 200 and record["status"] == "revoked"

    status, _, record = call(api, "POST", REVOKE + "/approve", authorization=f"bearer {TOKEN}")
    assert status == 200 and record["status"] == "pending"


@pytest.mark.usefixtures("submitted")
def test_public_routes_need_no_token_and_preflight_allows_the_template_methods() -> None:
    api = gateway(None)

    assert call(api, "GET", REVOKE)[0] == 200
    status, headers, _ = call(
        api, "OPTIONS", REVOKE, origin="https://app.example", **{"access-control-request-method": "DELETE"}
    )
    assert status == 204
    assert set(headers["Access-Control-Allow-Methods"].split(",")) == {"GET", "POST", "DELETE", "OPTIONS"}
