"""The local WebSocket API, its management API and Lambda's Invoke API on the local HTTP API's port.

Real parts on loopback: the gateway's server, a real ``websockets`` client, the real boto3
``apigatewaymanagementapi`` and ``lambda`` clients. The functions are the test handlers of
tests/fixtures_ws/handlers.py (recording every event, posting back through the management API), so
these tests hold whether or not the stream and broadcaster functions exist yet.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request
from wsproto.frame_protocol import CloseReason

from local_stack.gateway import LocalHttpApi, make_server
from local_stack.lambda_api import LocalFunction, LocalLambdaApi
from local_stack.template import FunctionDef, WebSocketApi, WebSocketRoute, load_template, websocket_api
from local_stack.websocket import LocalWebSocketApi
from tests.fixtures_ws import handlers
from tests.support import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures_ws"
CONNECTION_ID = re.compile(r"^[A-Za-z0-9_-]{15}=$")
CREDENTIALS = {"region_name": "eu-west-1", "aws_access_key_id": "local", "aws_secret_access_key": "local"}


def function(
    handler: str, name: str = "StreamFunction", module: str = "tests.fixtures_ws.handlers"
) -> FunctionDef:
    return FunctionDef(name, f"{module}.{handler}", "tests", 5, 128, {}, None)


ROUTES = ("$connect", "$disconnect", "$default", "echo", "boom")
TEST_API = WebSocketApi(
    "StreamApi",
    "$request.body.action",
    "live",
    tuple(WebSocketRoute(key, function("stream")) for key in ROUTES),
)


class Local:
    def __init__(self, port: int, websocket: LocalWebSocketApi) -> None:
        self.base, self.url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws"
        self.websocket = websocket
        config = Config(max_pool_connections=50, retries={"max_attempts": 1})
        self.management = boto3.client(
            "apigatewaymanagementapi", endpoint_url=self.base, config=config, **CREDENTIALS
        )
        self.lambdas = boto3.client("lambda", endpoint_url=self.base, config=config, **CREDENTIALS)

    def connect(self, query: str = "", **kwargs: Any) -> tuple[ClientConnection, str]:
        """A real client, and the connection id its $connect event carried."""
        tag = uuid.uuid4().hex
        headers = {"X-Test-Client": tag}
        client = connect(
            f"{self.url}{query}", additional_headers=headers, user_agent_header="test-client/1", proxy=None,
            ping_interval=None, open_timeout=5, close_timeout=2, **kwargs,
        )  # fmt: skip
        event = handlers.recorded(lambda e: e.get("headers", {}).get("X-Test-Client") == tag)
        return client, event["requestContext"]["connectionId"]


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Local]]:
    """Starts the gateway with the test routes (limits as given); every server stopped at the end."""
    stops: list[Callable[[], None]] = []

    def start(**limits: float) -> Local:
        websocket = LocalWebSocketApi(TEST_API, report=lambda line: None, **limits)  # type: ignore[arg-type]
        functions = [
            function("broadcast", "BroadcasterFunction"),
            function("fail", "Failing"),
            function("handler", "Missing", "tests.fixtures_ws.absent"),  # code that is not there
        ]
        lambdas = LocalLambdaApi([LocalFunction(f) for f in functions], report=lambda line: None)
        server = make_server(
            LocalHttpApi([], cors_origins=["*"]), "127.0.0.1", 0, websocket=websocket, lambdas=lambdas
        )
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()

        def stop() -> None:
            lambdas.stop(2)
            websocket.close_all(2)
            server.shutdown()
            server.server_close()

        stops.append(stop)
        local = Local(server.server_port, websocket)
        monkeypatch.setenv("STREAM_MANAGEMENT_URL", local.base)
        return local

    yield start
    for stop in stops:
        stop()


@pytest.fixture
def local(serve: Callable[..., Local]) -> Local:
    return serve()


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"apiGatewayWebSocketApi{name}.json").read_text())  # type: ignore[no-any-return]


def nothing_received(client: ClientConnection, wait_s: float = 0.3) -> bool:
    try:
        client.recv(timeout=wait_s)
    except TimeoutError:
        return True
    return False


def gone(local: Local, connection_id: str, timeout_s: float = 5.0) -> bool:
    """True once a post to ``connection_id`` answers GoneException (the server has forgotten it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            local.management.post_to_connection(ConnectionId=connection_id, Data=b"ping")
        except local.management.exceptions.GoneException:
            return True
        time.sleep(0.05)
    return False


def test_the_templates_websocket_routes_all_go_to_the_stream_function() -> None:
    api = websocket_api(load_template())
    assert api is not None
    assert (api.logical_id, api.route_selection_expression, api.stage) == (
        "StreamApi",
        "$request.body.action",
        "live",
    )
    assert {route.route_key for route in api.routes} == {"$connect", "$disconnect", "$default"}
    assert {(route.function.logical_id, route.function.handler) for route in api.routes} == {
        ("StreamFunction", "stream.handler.lambda_handler")
    }


def test_connect_message_and_disconnect_events_have_the_shape_of_powertools_fixtures(local: Local) -> None:
    from aws_lambda_powertools.utilities.parser.models import (
        APIGatewayWebSocketConnectEventModel,
        APIGatewayWebSocketDisconnectEventModel,
        APIGatewayWebSocketMessageEventModel,
    )

    # Given a client connected: its $connect event
    client, connection_id = local.connect()
    assert CONNECTION_ID.match(connection_id), connection_id
    connected = handlers.recorded(lambda e: e["requestContext"]["connectionId"] == connection_id)

    # When it sends a message no route names, then closes with a code and a reason
    client.send(json.dumps({"action": "nothing here", "n": 1}))
    message = handlers.recorded(
        lambda e: (
            e["requestContext"].get("messageId") and e["requestContext"]["connectionId"] == connection_id
        )
    )
    client.close(code=4000, reason="bye")
    disconnected = handlers.recorded(
        lambda e: (
            e["requestContext"]["eventType"] == "DISCONNECT"
            and e["requestContext"]["connectionId"] == connection_id
        )
    )

    # Then each event has the keys of API Gateway's, as Powertools' fixtures have them, and parses
    for event, name in ((connected, "Connect"), (message, "Message"), (disconnected, "Disconnect")):
        expected = fixture(name)
        assert set(event) == set(expected), name
        assert set(event["requestContext"]) == set(expected["requestContext"]), name
        assert set(event["requestContext"]["identity"]) == set(expected["requestContext"]["identity"]), name
        assert event["requestContext"]["connectionId"] == connection_id
        assert event["requestContext"]["connectedAt"] == connected["requestContext"]["connectedAt"]
        assert event["requestContext"]["stage"] == "live" and event["isBase64Encoded"] is False
        assert (event["requestContext"]["identity"]["sourceIp"], event["requestContext"]["domainName"]) == (
            "127.0.0.1", local.base.removeprefix("http://"),
        )  # fmt: skip
    assert set(disconnected["headers"]) == set(fixture("Disconnect")["headers"])
    APIGatewayWebSocketConnectEventModel.model_validate(connected)
    APIGatewayWebSocketMessageEventModel.model_validate(message)
    APIGatewayWebSocketDisconnectEventModel.model_validate(disconnected)
    assert connected["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert connected["multiValueHeaders"]["User-Agent"] == ["test-client/1"]
    assert message["requestContext"]["routeKey"] == "$default"
    assert json.loads(message["body"]) == {"action": "nothing here", "n": 1}
    assert (
        disconnected["requestContext"]["disconnectStatusCode"],
        disconnected["requestContext"]["disconnectReason"],
    ) == (4000, "bye")


def raw_client(local: Local, receive_buffer: int = 0) -> tuple[socket.socket, WSConnection, str]:
    """A client speaking wsproto on a plain socket, for what a polite client never does; its id."""
    tag = uuid.uuid4().hex
    sock = socket.socket()
    sock.settimeout(5)
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", int(local.base.rsplit(":", 1)[1])))
    ws = WSConnection(ConnectionType.CLIENT)
    host = local.base.removeprefix("http://")
    sock.sendall(ws.send(Request(host=host, target="/ws", extra_headers=[(b"X-Test-Client", tag.encode())])))
    accepted = False
    while not accepted:
        ws.receive_data(sock.recv(65536))
        accepted = any(isinstance(event, AcceptConnection) for event in ws.events())
    event = handlers.recorded(lambda e: e.get("headers", {}).get("X-Test-Client") == tag)
    return sock, ws, event["requestContext"]["connectionId"]


def disconnect_of(connection_id: str) -> dict[str, Any]:
    return handlers.recorded(
        lambda e: (
            e["requestContext"]["eventType"] == "DISCONNECT"
            and e["requestContext"]["connectionId"] == connection_id
        )
    )["requestContext"]


def test_a_close_frame_without_a_code_is_1005_as_api_gateway_reports_it(local: Local) -> None:
    sock, ws, connection_id = raw_client(local)
    with sock:
        sock.sendall(ws.send(CloseConnection(code=CloseReason.NO_STATUS_RCVD)))  # an empty close frame
        context = disconnect_of(connection_id)
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (
        1005,
        fixture("Disconnect")["requestContext"]["disconnectReason"],
    )


def test_a_connect_answered_with_a_non_2xx_status_refuses_the_upgrade_with_it(local: Local) -> None:
    for asked, answered in (("401", 401), ("429", 429), ("302", 403)):
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{local.url}?refuse={asked}", proxy=None, open_timeout=5)
        assert refused.value.response.status_code == answered
        assert json.loads(refused.value.response.body or b"{}") == {"message": "refused by the test"}
    # and nothing was registered: no frame can be posted to the refused connection
    refused_id = handlers.recorded(lambda e: (e.get("queryStringParameters") or {}).get("refuse") == "401")
    with pytest.raises(local.management.exceptions.GoneException):
        local.management.post_to_connection(
            ConnectionId=refused_id["requestContext"]["connectionId"], Data=b"x"
        )
    # A plain GET (no upgrade) is refused by the handshake itself
    assert httpx.get(local.url.replace("ws://", "http://"), timeout=5).status_code in (400, 426)


def test_messages_go_to_the_route_their_action_names_else_to_default(local: Local) -> None:
    client, connection_id = local.connect()
    with client:
        # "echo" is a route: its function posts back through the management API
        client.send('{"action": "echo", "x": 1}')
        assert client.recv(timeout=5) == 'echo:{"action": "echo", "x": 1}'
        # not JSON, an unknown action, a route key that is not a message route, not an object
        for body in ("hello", '{"action": "nope"}', '{"action": "$connect"}', "[1, 2]", '{"action": 7}'):
            client.send(body)
        # a route whose function fails: API Gateway's own message to the client
        client.send('{"action": "boom"}')
        failed = json.loads(client.recv(timeout=5))
        assert failed["message"] == "Internal server error" and failed["connectionId"] == connection_id
        # What $default returned was never sent
        assert nothing_received(client)
    routed = [
        (e["requestContext"]["routeKey"], e["body"]) for e in handlers.events_of(connection_id) if "body" in e
    ]
    assert routed == [
        ("echo", '{"action": "echo", "x": 1}'),
        ("$default", "hello"),
        ("$default", '{"action": "nope"}'),
        ("$default", '{"action": "$connect"}'),
        ("$default", "[1, 2]"),
        ("$default", '{"action": 7}'),
        ("boom", '{"action": "boom"}'),
    ]


def test_post_to_connection_sends_a_frame_and_get_connection_describes_it(local: Local) -> None:
    client, connection_id = local.connect()
    with client:
        answer = local.management.post_to_connection(ConnectionId=connection_id, Data=b'{"price": "1.5"}')
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert client.recv(timeout=5) == '{"price": "1.5"}'  # a text frame

        described = local.management.get_connection(ConnectionId=connection_id)
        assert described["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "test-client/1"}
        assert described["ConnectedAt"] <= described["LastActiveAt"]
        assert abs(described["ConnectedAt"].timestamp() - time.time()) < 30


def test_posts_to_an_unknown_id_or_a_client_that_vanished_raise_gone(local: Local) -> None:
    for call in (
        local.management.post_to_connection,
        local.management.get_connection,
        local.management.delete_connection,
    ):
        kwargs: dict[str, Any] = {"ConnectionId": "AAAAAAAAAAAAAAA="}
        if call == local.management.post_to_connection:
            kwargs["Data"] = b"x"
        with pytest.raises(local.management.exceptions.GoneException) as error:
            call(**kwargs)
        assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410

    # Given a client whose socket is gone without a close frame
    sock, _, connection_id = raw_client(local)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # a reset
    sock.close()
    # Then posts to it raise GoneException, and its $disconnect is not invoked (best effort on AWS)
    assert gone(local, connection_id)
    time.sleep(0.3)
    assert [e["requestContext"]["eventType"] for e in handlers.events_of(connection_id)] == ["CONNECT"]


def test_a_client_that_stops_reading_delays_no_one_else_and_is_gone_within_a_second(local: Local) -> None:
    polite, polite_id = local.connect()
    sock, _, stuck_id = raw_client(local, receive_buffer=4096)  # and it never reads

    def flood() -> float:
        """Posts to the stuck client until it is gone: how long the last post took."""
        for _ in range(2000):
            started = time.monotonic()
            try:
                local.management.post_to_connection(ConnectionId=stuck_id, Data=b"x" * 100_000)
            except local.management.exceptions.GoneException:
                return time.monotonic() - started
        raise AssertionError("the stuck client never filled its buffers")

    with polite, sock, ThreadPoolExecutor(1) as pool:
        flooding = pool.submit(flood)
        latencies = []
        while not flooding.done() or not latencies:
            started = time.monotonic()
            local.management.post_to_connection(ConnectionId=polite_id, Data=b"still there")
            assert polite.recv(timeout=5) == "still there"
            latencies.append(time.monotonic() - started)
        assert flooding.result() < 3  # the send that could not finish was given up after a second
        assert max(latencies) < 0.5, latencies


def test_delete_connection_closes_the_client_and_invokes_disconnect(local: Local) -> None:
    client, connection_id = local.connect()
    local.management.delete_connection(ConnectionId=connection_id)
    with pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    context = disconnect_of(connection_id)
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (
        1000,
        "Connection Closed Normally",
    )
    with pytest.raises(local.management.exceptions.GoneException):
        local.management.post_to_connection(ConnectionId=connection_id, Data=b"x")


def test_parallel_posts_reach_every_connection_in_order(local: Local) -> None:
    clients = [local.connect() for _ in range(20)]
    try:
        # 20 connections, 50 posts each, every connection's posts in order from its own thread
        def post_all(connection_id: str) -> None:
            for n in range(50):
                local.management.post_to_connection(
                    ConnectionId=connection_id, Data=f"{connection_id} {n}".encode()
                )

        with ThreadPoolExecutor(20) as pool:
            list(pool.map(post_all, [connection_id for _, connection_id in clients]))
        for client, connection_id in clients:
            assert [client.recv(timeout=5) for _ in range(50)] == [f"{connection_id} {n}" for n in range(50)]

        # and 50 posts at once to one connection: every one delivered, whole
        client, connection_id = clients[0]
        with ThreadPoolExecutor(50) as pool:
            list(
                pool.map(
                    lambda n: local.management.post_to_connection(
                        ConnectionId=connection_id, Data=f"burst {n}".encode()
                    ),
                    range(50),
                )
            )
        assert sorted(client.recv(timeout=5) for _ in range(50)) == sorted(f"burst {n}" for n in range(50))
    finally:
        for client, _ in clients:
            client.close()


def test_a_message_over_128_kb_closes_with_1009(local: Local) -> None:
    client, connection_id = local.connect()
    client.send("x" * (128 * 1024))  # the limit itself passes
    handlers.recorded(
        lambda e: (
            e["requestContext"]["connectionId"] == connection_id and len(e.get("body") or "") == 128 * 1024
        )
    )
    client.send("x" * (128 * 1024 + 1))
    with pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert disconnect_of(connection_id)["disconnectStatusCode"] == 1009


def test_idle_and_old_connections_are_closed_with_1001(serve: Callable[..., Local]) -> None:
    local = serve(idle_timeout_s=0.5, max_age_s=1.5)
    idle, idle_id = local.connect()
    busy, busy_id = local.connect()
    started = time.monotonic()
    busy_closed_at: list[float] = []

    def keep_busy() -> None:
        """A message every 0.1 s from the start, so that only its age can close it."""
        try:
            while time.monotonic() - started < 5:
                busy.send("still here")
                time.sleep(0.1)
        except ConnectionClosed:
            busy_closed_at.append(time.monotonic())

    sender = threading.Thread(target=keep_busy)
    sender.start()
    with pytest.raises(ConnectionClosed) as closed:
        idle.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert 0.4 < time.monotonic() - started < 2
    # a connection kept busy is closed at its maximum age all the same
    sender.join(6)
    assert busy_closed_at and 1.3 < busy_closed_at[0] - started < 3
    assert disconnect_of(idle_id)["disconnectStatusCode"] == 1001
    assert disconnect_of(busy_id)["disconnectStatusCode"] == 1001


def test_stopping_closes_every_connection_with_1001_and_invokes_disconnect(local: Local) -> None:
    client, connection_id = local.connect()
    local.websocket.close_all(2)
    with pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert disconnect_of(connection_id)["disconnectStatusCode"] == 1001


# --- Lambda's Invoke API ---------------------------------------------------------------------------


def test_an_event_invocation_answers_202_and_runs_the_handler_in_the_background(
    local: Local, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, connection_id = local.connect()
    # The endpoint from the standard variable, as the fetcher's client finds it
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", local.base)
    lambdas = boto3.client("lambda", **CREDENTIALS)
    payload = {"connections": [connection_id, "AAAAAAAAAAAAAAA="], "message": "slot 1"}
    answer = lambdas.invoke(
        FunctionName="BroadcasterFunction", InvocationType="Event", Payload=json.dumps(payload)
    )
    assert answer["StatusCode"] == 202
    with client:
        assert client.recv(timeout=5) == "slot 1"
    result = handlers.recorded(lambda e: e.get("result", {}).get("gone") == ["AAAAAAAAAAAAAAA="])["result"]
    assert result == {"posted": 1, "gone": ["AAAAAAAAAAAAAAA="], "function": "BroadcasterFunction"}


def test_a_request_response_invocation_answers_the_result_or_the_error(local: Local) -> None:
    client, connection_id = local.connect()
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:BroadcasterFunction"
    payload = json.dumps({"connections": [connection_id], "message": "hello"})
    with client:
        answer = local.lambdas.invoke(FunctionName=arn, Payload=payload)
        assert client.recv(timeout=5) == "hello"
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    assert json.loads(answer["Payload"].read()) == {
        "posted": 1,
        "gone": [],
        "function": "BroadcasterFunction",
    }

    failed = local.lambdas.invoke(FunctionName="Failing", Payload=b'{"n": 1}')
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorType"] == "ValueError"
    missing = local.lambdas.invoke(FunctionName="Missing", Payload=b"{}")
    error = json.loads(missing["Payload"].read())
    assert missing["FunctionError"] == "Unhandled" and error["errorType"] == "Runtime.ImportModuleError"


def test_an_unknown_function_raises_resource_not_found(local: Local) -> None:
    for name in ("NoSuchFunction", "arn:aws:lambda:eu-west-1:123456789012:function:NoSuchFunction"):
        with pytest.raises(local.lambdas.exceptions.ResourceNotFoundException):
            local.lambdas.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
