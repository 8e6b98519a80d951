"""What the push benchmarks share: the service's push settings, the local gateway in this process,
the management API stand-in in another, and probes on the clients (what a post carries, the
registry Query answered again without moto's own time).

Why the registry Query is answered again: moto answers a Query of the connection registry in about
0.8 ms per item (1.1 s for 1,000 connections, several seconds for 10,000), where DynamoDB answers
a page of up to 1 MB in milliseconds. ``QueryReplay`` sends the first Query of an unchanged registry
to moto, keeps its answer byte for byte, and hands the same bytes to the SDK for the next identical
Query until a write touches a connection item: the broadcaster still receives, parses and
deserialises every byte (its real cost), without the emulator's time that DynamoDB does not have.
It runs past 300 lines because each probe hooks a different point of the SDK's request.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bench.common import REPO_ROOT, Stack, configure_service

BROADCASTER = "BroadcasterFunction"  # the local Invoke API knows a function by its logical id
PUSH_SETTINGS = ("STREAM_MANAGEMENT_URL", "AWS_ENDPOINT_URL_LAMBDA", "BROADCASTER_FUNCTION_NAME")
REGISTRY_PK = b'"CONN"'  # store/connections.py: every connection item's partition key
MESSAGE_TYPE_PREFIX = b'{"type":"'
REGISTRY_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


def raise_open_files(needed: int) -> tuple[int, int]:
    """The soft limit on open files raised towards ``needed`` (never past the hard limit)."""
    from bench.stream_clients import raise_open_files as raise_limit

    return raise_limit(needed)


def reset_push_clients() -> None:
    """Settings, SDK clients and the broadcaster's pool made again from the environment."""
    from market_data import push
    from market_data.config import get_settings

    get_settings.cache_clear()
    push.reset_clients()
    with contextlib.suppress(ImportError):
        import broadcaster.fanout as fanout

        # One pool per container, sized by BROADCAST_CONCURRENCY when first used: a new size
        # needs a new pool, as a new container would have.
        if fanout._executor is not None:
            fanout._executor.shutdown(wait=True)
            fanout._executor = None


@contextlib.contextmanager
def push_environment(stack: Stack, pairs: list[str], api_url: str, **extra: str) -> Iterator[dict[str, str]]:
    """The service pointed at ``stack`` with the management and Invoke APIs on ``api_url``. The push
    settings are taken away afterwards, so no later scenario's fetcher starts a broadcaster."""
    for name in PUSH_SETTINGS:
        os.environ.pop(name, None)
    env = configure_service(
        stack, pairs, STREAM_MANAGEMENT_URL=api_url, AWS_ENDPOINT_URL_LAMBDA=api_url, **extra
    )
    reset_push_clients()
    try:
        yield env
    finally:
        for name in (*PUSH_SETTINGS, "BROADCAST_CONCURRENCY", "BROADCAST_CONNECTIONS_PER_INVOCATION"):
            os.environ.pop(name, None)
        reset_push_clients()


@contextlib.contextmanager
def local_gateway(problems: list[str]) -> Iterator[str]:
    """The local HTTP API's server with the template's WebSocket API and Lambda's Invoke API, in
    this process as ``make demo`` serves them; its base URL. Stopped at the end."""
    from local_stack.gateway import LocalHttpApi, make_server
    from local_stack.lambda_api import LocalFunction, LocalLambdaApi
    from local_stack.template import load_template, websocket_api
    from local_stack.websocket import LocalWebSocketApi

    template = load_template()
    api = websocket_api(template)
    if api is None:
        raise RuntimeError("template.yaml has no WebSocket API")
    lambdas = LocalLambdaApi(
        [LocalFunction.from_template(template, name) for name in ("StreamFunction", BROADCASTER)],
        report=problems.append,
    )
    websocket = LocalWebSocketApi(api, functions=lambdas.functions.values(), report=problems.append)
    server = make_server(
        LocalHttpApi([], cors_origins=["*"]), "127.0.0.1", 0, websocket=websocket, lambdas=lambdas
    )
    # The standard library listens with a backlog of 5: a thousand clients connecting would see
    # dropped SYNs and one-second retries. Listening again only raises the backlog.
    server.socket.listen(1024)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        lambdas.stop(10)
        websocket.close_all(5)
        server.shutdown()
        server.server_close()


@dataclass
class StandIn:
    """bench/standin.py running: the management API and Lambda's Invoke API with nothing behind."""

    url: str
    process: subprocess.Popen[str]

    def set_delay(self, delay_ms: float) -> None:
        import httpx

        httpx.post(f"{self.url}/_config", json={"delay_ms": delay_ms}, timeout=5).raise_for_status()

    def recorded(self) -> dict[str, Any]:
        """What it received since the last call: posts, their body bytes, invocation payloads."""
        import httpx

        answer = httpx.get(f"{self.url}/_recorded", timeout=30)
        answer.raise_for_status()
        return answer.json()  # type: ignore[no-any-return]


@contextlib.contextmanager
def standin() -> Iterator[StandIn]:
    from local_stack.servers import _stopped_with_parent

    process = subprocess.Popen(
        [sys.executable, "-m", "bench.standin"],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_stopped_with_parent(),  # a benchmark killed outright leaves no stand-in behind
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line.startswith("listening "):
            raise RuntimeError(f"the management API stand-in did not start: {line!r}")
        yield StandIn(f"http://127.0.0.1:{int(line.split()[1])}", process)
    finally:
        with contextlib.suppress(OSError):
            process.stdin.close()  # type: ignore[union-attr]
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _request_bytes(request: Any) -> int:
    """An SDK request as it goes on the wire: request line, headers (Host included, which
    http.client adds), blank line, body. TLS is not counted."""
    url = urlsplit(request.url)
    target = url.path + (f"?{url.query}" if url.query else "")
    head = f"{request.method} {target} HTTP/1.1\r\nHost: {url.netloc}\r\n"
    for name, value in request.headers.items():
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        head += f"{name}: {text}\r\n"
    body = request.body or b""
    return len(head) + 2 + len(body.encode() if isinstance(body, str) else body)


def _response_bytes(response: Any) -> int:
    head = f"HTTP/1.1 {response.status_code} OK\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in response.headers.items()
    )
    return len(head) + 2 + len(response.content or b"")


@dataclass
class SdkWire:
    """Requests one SDK client sent and their answers: counts and bytes by operation, and the
    bodies of management API posts by message type (update, heartbeat, snapshot, ...)."""

    requests: Counter[str] = field(default_factory=Counter)
    request_bytes: Counter[str] = field(default_factory=Counter)
    response_bytes: Counter[str] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)
    message_bytes: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def before_send(self, request: Any, **kwargs: Any) -> None:
        operation = str(kwargs.get("event_name", "")).rsplit(".", 1)[-1]
        self.record(operation, _request_bytes(request), bytes(request.body or b""))

    def record(self, operation: str, request_bytes: int, body: bytes, response_bytes: int = 0) -> None:
        kind = ""
        if operation == "PostToConnection" and body.startswith(MESSAGE_TYPE_PREFIX):
            # Every message is orjson's {"type":...} first (market_data/stream.py): read without
            # parsing, so the probe adds next to nothing to the CPU time of a post.
            end = body.find(b'"', len(MESSAGE_TYPE_PREFIX))
            kind = body[len(MESSAGE_TYPE_PREFIX) : end].decode()
        with self._lock:
            self.requests[operation] += 1
            self.request_bytes[operation] += request_bytes
            self.response_bytes[operation] += response_bytes
            if kind:
                self.messages[kind] += 1
                self.message_bytes[kind] += len(body)

    def after_call(self, http_response: Any, model: Any, **_: Any) -> None:
        size = _response_bytes(http_response)
        with self._lock:
            self.response_bytes[model.name] += size

    @contextlib.contextmanager
    def watching(self, client: Any) -> Iterator[SdkWire]:
        events = client.meta.events
        service = client.meta.service_model.service_id.hyphenize()
        events.register(f"before-send.{service}", self.before_send)
        events.register(f"after-call.{service}", self.after_call)
        try:
            yield self
        finally:
            events.unregister(f"before-send.{service}", self.before_send)
            events.unregister(f"after-call.{service}", self.after_call)

    def take(self) -> SdkWire:
        with self._lock:
            taken = SdkWire(
                self.requests, self.request_bytes, self.response_bytes, self.messages, self.message_bytes
            )
            self.requests, self.request_bytes, self.response_bytes = Counter(), Counter(), Counter()
            self.messages, self.message_bytes = Counter(), Counter()
        return taken


OPERATIONS = {"POST": "PostToConnection", "DELETE": "DeleteConnection"}


@contextlib.contextmanager
def watching_poster(poster: Any, wire: SdkWire) -> Iterator[SdkWire]:
    """Records each of the Poster's requests and answers in ``wire`` as they go on the wire
    (request line, the headers http.client adds and the signed ones, body; status line, headers,
    body), by standing in for its one exchange with the same http.client calls."""
    netloc = poster._netloc

    def exchange(
        connection: Any, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        data = answer.read()
        sent = f"{method} {path} HTTP/1.1\r\nHost: {netloc}\r\nAccept-Encoding: identity\r\n"
        sent += f"Content-Length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        answered = f"HTTP/1.1 {answer.status} {answer.reason}\r\n"
        answered += "".join(f"{k}: {v}\r\n" for k, v in answer.getheaders())
        wire.record(OPERATIONS[method], len(sent) + 2 + len(body), body, len(answered) + 2 + len(data))
        return answer.status, data

    poster._exchange = exchange
    try:
        yield wire
    finally:
        del poster._exchange


class _Raw:
    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._content


@dataclass
class QueryReplay:
    """The registry Query answered from moto's own last answer while no connection item changed
    (see the module's docstring). ``moto_ms``: how long moto took for each Query it answered."""

    answers: dict[bytes, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    moto_ms: list[tuple[int, float]] = field(default_factory=list)  # (response bytes, ms)
    replayed: int = 0
    _sent_at: dict[int, float] = field(default_factory=dict)
    _generation: int = 0  # one more at every write to a connection item
    # thread -> the registry Query it is sending (its body) and the generation it saw
    _asked: dict[int, tuple[bytes, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def changed(self) -> None:
        """Connection items were written through a client this replay does not watch."""
        with self._lock:
            self.answers.clear()
            self._generation += 1

    def before_call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        body = bytes(params.get("body") or b"")
        if REGISTRY_PK not in body:
            return  # not the connection registry (the pairs' registry changes as the fetcher writes it)
        with self._lock:
            if model.name in REGISTRY_WRITES:
                self.answers.clear()
                self._generation += 1
            elif model.name == "Query":
                self._asked[threading.get_ident()] = (body, self._generation)

    def before_send(self, request: Any, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        with self._lock:
            asked = self._asked.get(threading.get_ident())
            answer = self.answers.get(asked[0]) if asked else None
            if answer is not None:
                self.replayed += 1
        if asked is None:
            return None
        if answer is None:
            self._sent_at[threading.get_ident()] = time.perf_counter()
            return None
        status, headers, content = answer
        return AWSResponse(request.url, status, headers, _Raw(content))

    def before_parse(self, response_dict: dict[str, Any], **_: Any) -> None:
        sent = self._sent_at.pop(threading.get_ident(), None)
        if sent is not None:  # moto answered (a replayed answer was not sent)
            elapsed_ms = (time.perf_counter() - sent) * 1000
            with self._lock:
                self.moto_ms.append((len(response_dict.get("body") or b""), elapsed_ms))

    def after_call(self, http_response: Any, **_: Any) -> None:
        with self._lock:
            asked = self._asked.pop(threading.get_ident(), None)
            if asked is None or http_response.status_code != 200 or asked[1] != self._generation:
                return  # not the registry, or a connection item changed while this Query was out
            self.answers[asked[0]] = (200, dict(http_response.headers), http_response.content)

    @contextlib.contextmanager
    def watching(self, table: Any) -> Iterator[QueryReplay]:
        events = table.meta.client.meta.events
        handlers = [
            ("before-call.dynamodb", self.before_call),
            ("before-send.dynamodb.Query", self.before_send),
            ("before-parse.dynamodb.Query", self.before_parse),
            ("after-call.dynamodb.Query", self.after_call),
        ]
        for name, handler in handlers:
            events.register(name, handler)
        try:
            yield self
        finally:
            for name, handler in handlers:
                events.unregister(name, handler)


def prime_registry_query(settings: Any, replay: QueryReplay) -> None:
    """The registry's first Query through a client that waits for moto as long as it takes (the
    functions' own client gives up after 2 s): ``replay`` keeps the answer for the broadcaster."""
    import boto3
    from botocore.config import Config

    from market_data import store
    from market_data.clock import now_ms

    resource = boto3.resource(
        "dynamodb", endpoint_url=settings.dynamodb_endpoint_url, config=Config(read_timeout=300)
    )
    table = resource.Table(settings.market_data_table_name)
    with replay.watching(table):
        store.list_connections(table, now_ms=now_ms())
