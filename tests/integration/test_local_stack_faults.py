"""The local stack's own faults: a bad Content-Length, a secret in a start-up error, log lines
carrying another function's name, and the admin token it keeps. Real parts: the local HTTP API
over a socket, the handlers, the local stack's command line."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_stack.gateway import LocalHttpApi, make_server
from local_stack.servers import free_port
from local_stack.template import http_routes, load_template
from tests.support import REPO_ROOT


@pytest.fixture
def served(service_env: dict[str, str]) -> Iterator[tuple[str, int]]:
    api = LocalHttpApi(http_routes(load_template()), cors_origins=["*"])
    server = make_server(api, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[0], server.server_address[1]
    server.shutdown()
    server.server_close()


def raw_request(address: tuple[str, int], request: bytes) -> bytes:
    with socket.create_connection(address, timeout=3) as connection:
        connection.sendall(request)
        answer = b""
        while not _complete(answer):  # a server still waiting for a body never answers: timeout
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer


def _complete(answer: bytes) -> bool:
    """Whole when the head has arrived and the body matches its Content-Length: headers and body
    may come in separate segments."""
    head, separator, body = answer.partition(b"\r\n\r\n")
    if not separator:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return True


@pytest.mark.parametrize(("length", "status"), [("-1", b"400"), ("ten", b"400"), (None, b"411")])
def test_a_body_of_unknown_length_is_refused_at_once(
    served: tuple[str, int], length: str | None, status: bytes
) -> None:
    header = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    lines = [
        "POST /api/market-data/whitelist HTTP/1.1",
        "Host: local",
        "Content-Type: application/json",
        header,
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()

    answer = raw_request(served, request)

    assert answer.split(b" ", 2)[1] == status, answer


@pytest.mark.parametrize("method", ["PUT", "TRACE", "PROPFIND"])
def test_an_undeclared_method_is_answered_as_api_gateway_answers_it(
    served: tuple[str, int], method: str
) -> None:
    request = (
        f"{method} /api/market-data/prices HTTP/1.1\r\nHost: local\r\nContent-Length: 0\r\n\r\n".encode()
    )

    answer = raw_request(served, request)

    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split(b" ", 2)[1] == b"404", answer
    assert rest.endswith(b'{"message":"Not Found"}')


def test_a_bad_secret_is_named_at_start_up_never_printed() -> None:
    from market_data.config import ConfigurationError, load_settings

    secret = "sesame-0123"  # too short: 16 characters at least
    with pytest.raises(ConfigurationError) as caught:
        load_settings(
            {"REDIS_URL": "redis://127.0.0.1:9/0", "MARKET_DATA_TABLE_NAME": "md", "ADMIN_TOKEN": secret}
        )

    assert "ADMIN_TOKEN" in str(caught.value) and "11 characters" in str(caught.value)
    assert secret not in str(caught.value)


def test_each_functions_log_lines_carry_its_own_name(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from local_stack.__main__ import keep_function_log_keys_apart
    from local_stack.lambda_context import LocalLambdaContext
    from market_data.observability import logger
    from prices_api.handler import lambda_handler as prices_handler
    from tests.support import load_event

    # Given the functions sharing one process and one logger, as in the local stack (undone after)
    monkeypatch.setattr(logger, "append_keys", logger.append_keys)
    keep_function_log_keys_apart()
    stream = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", stream)
    started, served = threading.Event(), threading.Event()

    @logger.inject_lambda_context
    def fetcher_like(event: object, context: object) -> None:
        started.set()
        served.wait(5)  # a prices request is served meanwhile, in another thread
        logger.warning("a fetcher line")

    thread = threading.Thread(target=fetcher_like, args=({}, LocalLambdaContext("FetcherFunction", 5)))
    thread.start()
    started.wait(5)
    prices_handler(load_event("health_get.json"), LocalLambdaContext("PricesApiFunction", 6))
    served.set()
    thread.join(5)

    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    fetcher_lines = [line for line in lines if line.get("message") == "a fetcher line"]
    assert fetcher_lines and all(line["function_name"] == "FetcherFunction" for line in fetcher_lines)


def test_the_admin_token_is_made_once_kept_private_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from local_stack.admin_token import admin_token

    monkeypatch.setenv("LOCAL_STACK_DIR", str(tmp_path / "local"))
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)

    made = admin_token()
    again = admin_token()

    token_file = tmp_path / "local" / "admin-token"
    assert made.value == again.value == token_file.read_text().strip() and len(made.value) >= 16
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert made.value not in made.describe() and made.shell_value == f"$(cat {made.source})"
    # ADMIN_TOKEN, when set, is the token: named as the source, the file left alone
    monkeypatch.setenv("ADMIN_TOKEN", "from-the-shell-0123456789")
    given = admin_token()
    assert (given.value, given.describe(), given.shell_value) == (
        "from-the-shell-0123456789",
        "bearer token from ADMIN_TOKEN",
        "$ADMIN_TOKEN",
    )
    assert token_file.read_text().strip() == made.value


def test_a_kept_token_too_short_stops_start_up_naming_the_file_never_printing_it(tmp_path: Path) -> None:
    (tmp_path / "admin-token").write_text("short-secret\n")
    env = {k: v for k, v in os.environ.items() if k not in ("ADMIN_TOKEN", "PORT", "SIMULATOR_PORT")}
    env |= {"LOCAL_STACK_DIR": str(tmp_path), "PORT": str(free_port())}

    result = subprocess.run(
        [sys.executable, "-m", "local_stack", "--simulator"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 2
    assert f"{tmp_path / 'admin-token'}: the admin token must be one word of at least 16" in result.stdout
    assert "short-secret" not in result.stdout + result.stderr
