"""The template's WebSocket API and broadcaster behind an in-process local gateway, as ``make demo``
serves them: for tests that run the stream and broadcaster handlers with the real boto3 clients."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest

from local_stack.template import load_template


@contextlib.contextmanager
def local_websocket_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from local_stack.gateway import LocalHttpApi, make_server
    from local_stack.lambda_api import LocalFunction, LocalLambdaApi
    from local_stack.template import websocket_api
    from local_stack.websocket import LocalWebSocketApi
    from market_data import push
    from market_data.config import get_settings

    template = load_template()
    lambdas = LocalLambdaApi(
        [LocalFunction.from_template(template, "BroadcasterFunction")], report=lambda _: None
    )
    api = websocket_api(template)
    assert api is not None
    websocket = LocalWebSocketApi(api, functions=lambdas.functions.values(), report=lambda _: None)
    server = make_server(
        LocalHttpApi([], cors_origins=["*"]), "127.0.0.1", 0, websocket=websocket, lambdas=lambdas
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("STREAM_MANAGEMENT_URL", base)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", base)
    monkeypatch.setenv("BROADCASTER_FUNCTION_NAME", "BroadcasterFunction")
    get_settings.cache_clear()
    push.reset_clients()
    try:
        yield base
    finally:
        lambdas.stop(5)
        websocket.close_all(2)
        server.shutdown()
        server.server_close()
        push.reset_clients()
        get_settings.cache_clear()
