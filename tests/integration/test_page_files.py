"""The live page's files as the prices function serves them at ``/``: the HTML with the stream's
address and a policy allowing only it, the script and style, revalidation, gzip."""

from __future__ import annotations

import base64
import copy
import gzip
import re
from typing import Any

import pytest

from local_stack.lambda_context import LocalLambdaContext
from market_data.config import get_settings
from prices_api.handler import lambda_handler
from tests.support import load_event


def page_event(path: str = "/", **headers: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("page_get.json"))
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["routeKey"] = event["requestContext"]["routeKey"] = f"GET {path}"
    event["headers"].update(headers)
    return event


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    return lambda_handler(event, LocalLambdaContext("prices", 6))


def body_of(response: dict[str, Any]) -> str:
    raw = response["body"]
    if response["isBase64Encoded"]:
        raw = gzip.decompress(base64.b64decode(raw)).decode()
    return str(raw)


@pytest.mark.usefixtures("service_env")
def test_the_page_names_no_stream_when_none_is_set_and_allows_its_own_hosts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STREAM_URL", raising=False)
    get_settings.cache_clear()
    response = invoke(page_event())

    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "text/html; charset=utf-8"
    html = body_of(response)
    assert '<meta name="market-data-stream" content="">' in html  # the page then uses its host's /ws
    policy = response["headers"]["Content-Security-Policy"]
    host = page_event()["headers"]["host"]
    assert f"connect-src 'self' ws://{host} wss://{host};" in policy
    assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    # The script and style are named by their content, so a new deployment's page never runs an
    # old script a browser kept.
    script = invoke(page_event("/app.js"))
    version = re.search(r'src="/app\.js\?v=([0-9a-f]{12})"', html)
    assert version is not None and script["headers"]["ETag"].strip('"').startswith(version.group(1))


@pytest.mark.usefixtures("service_env")
def test_the_page_names_the_stacks_stream_and_allows_only_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_URL", "wss://abc.execute-api.eu-west-1.amazonaws.com/live")
    get_settings.cache_clear()
    response = invoke(page_event())

    html = body_of(response)
    assert 'content="wss://abc.execute-api.eu-west-1.amazonaws.com/live"' in html
    policy = response["headers"]["Content-Security-Policy"]
    assert "connect-src 'self' wss://abc.execute-api.eu-west-1.amazonaws.com;" in policy


@pytest.mark.usefixtures("service_env")
@pytest.mark.parametrize(
    ("path", "content_type", "text"),
    [
        ("/app.js", "text/javascript", "async function start("),
        ("/view.js", "text/javascript", "function renderCard("),
        ("/stream.js", "text/javascript", "new WebSocket("),
        ("/app.css", "text/css", ".card"),
    ],
)
def test_the_script_and_style_are_served_gzip_when_asked_and_revalidated(
    path: str, content_type: str, text: str
) -> None:
    plain = invoke(page_event(path, **{"accept-encoding": "identity"}))
    zipped = invoke(page_event(path, **{"accept-encoding": "gzip"}))

    assert plain["statusCode"] == zipped["statusCode"] == 200
    assert plain["headers"]["Content-Type"].startswith(content_type)
    assert text in body_of(plain) and body_of(zipped) == body_of(plain)
    assert zipped["headers"]["Content-Encoding"] == "gzip" and "Content-Encoding" not in plain["headers"]
    again = invoke(page_event(path, **{"if-none-match": plain["headers"]["ETag"]}))
    assert again["statusCode"] == 304 and again["body"] == ""


@pytest.mark.usefixtures("service_env")
def test_a_query_string_on_the_page_is_ignored_and_other_paths_are_still_404() -> None:
    event = page_event()
    event["rawQueryString"], event["queryStringParameters"] = "utm_source=x", {"utm_source": "x"}
    assert invoke(event)["statusCode"] == 200
    assert invoke(page_event("/nothing-here.js"))["statusCode"] == 404
