"""The Poster over real HTTP: what it sends is what API Gateway's management API checks (the path
as the SDK encodes it, a SigV4 signature over the request as received), and what it is answered
maps to delivered, gone or failed; kept-alive connections survive the other end closing them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from local_stack.servers import free_port
from market_data.push import PushUnavailableError
from market_data.push.clients import Poster

CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
REGION = "eu-west-1"
CONNECTION_ID = "L0SM9cOFvHcCIhw="  # the shape API Gateway gives: base64 with its padding


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Endpoint:
    """A management API that records every request, answers ``status``, and (with
    ``close_after``) closes the connection after answering without saying so, as a server does
    with an idle kept-alive connection."""

    url: str
    received: list[Received] = field(default_factory=list)
    status: int = 200
    close_after: bool = False
    connections: set[int] = field(default_factory=set)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    port = free_port()
    found = Endpoint(f"http://127.0.0.1:{port}/live")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                found.received.append(Received(self.command, self.path, dict(self.headers.items()), body))
                found.connections.add(self.client_address[1])
            payload = b"" if found.status in (200, 204) else b'{"message": "answered"}'
            self.send_response(found.status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
            if found.close_after:
                self.close_connection = True

        do_POST = do_DELETE = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def poster(endpoint: Endpoint) -> Poster:
    return Poster(endpoint.url, REGION, CREDENTIALS.get_frozen_credentials)


def signature_checks(received: Received, host: str) -> bool:
    """What API Gateway does: the signature recomputed over the request as it arrived, with the
    headers the Authorization names and the time it gives."""
    authorization = received.headers["Authorization"]
    fields = dict(part.strip().split("=", 1) for part in authorization.split(" ", 1)[1].split(","))
    signed = fields["SignedHeaders"].split(";")
    assert fields["Credential"].endswith(f"/{REGION}/execute-api/aws4_request")
    headers = {name: value for name, value in received.headers.items() if name.lower() in signed}
    request = AWSRequest(
        method=received.method, url=f"http://{host}{received.path}", data=received.body, headers=headers
    )
    signer = SigV4Auth(CREDENTIALS, "execute-api", REGION)
    request.context["timestamp"] = received.headers["X-Amz-Date"]
    string_to_sign = signer.string_to_sign(request, signer.canonical_request(request))
    return signer.signature(string_to_sign, request) == fields["Signature"]


def test_a_post_goes_where_the_sdks_would_and_its_signature_checks(
    endpoint: Endpoint, poster: Poster
) -> None:
    assert poster.post(CONNECTION_ID, b'{"type":"heartbeat","at":1}') is True
    sdk = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint.url,
        region_name=REGION,
        aws_access_key_id=CREDENTIALS.access_key,
        aws_secret_access_key=CREDENTIALS.secret_key,
    )
    sdk.post_to_connection(ConnectionId=CONNECTION_ID, Data=b'{"type":"heartbeat","at":1}')
    ours, theirs = endpoint.received
    assert (ours.method, ours.path, ours.body) == (theirs.method, theirs.path, theirs.body)
    assert ours.path == "/live/@connections/L0SM9cOFvHcCIhw%3D"
    host = endpoint.url.split("/")[2]
    assert signature_checks(ours, host)
    # The check is a real one: the SDK's request passes it, a changed body does not.
    assert signature_checks(theirs, host)
    ours.body = b'{"type":"heartbeat","at":2}'
    assert not signature_checks(ours, host)


def test_a_close_is_a_signed_delete_and_a_gone_connection_is_not_an_error(
    endpoint: Endpoint, poster: Poster
) -> None:
    endpoint.status = 204
    poster.close(CONNECTION_ID)
    endpoint.status = 410
    poster.close(CONNECTION_ID)
    assert [r.method for r in endpoint.received] == ["DELETE", "DELETE"]
    assert signature_checks(endpoint.received[0], endpoint.url.split("/")[2])


def test_410_means_gone_and_other_answers_fail_naming_the_status(endpoint: Endpoint, poster: Poster) -> None:
    endpoint.status = 410
    assert poster.post(CONNECTION_ID, b"{}") is False
    for status in (403, 413, 429, 500):
        endpoint.status = status
        with pytest.raises(PushUnavailableError, match=f"answered {status}"):
            poster.post(CONNECTION_ID, b"{}")


def test_an_endpoint_that_is_not_there_fails_as_unavailable() -> None:
    poster = Poster(f"http://127.0.0.1:{free_port()}/live", REGION, CREDENTIALS.get_frozen_credentials)
    with pytest.raises(PushUnavailableError):
        poster.post(CONNECTION_ID, b"{}")


def test_a_kept_alive_connection_closed_by_the_other_end_is_replaced_and_each_post_arrives_once(
    endpoint: Endpoint, poster: Poster
) -> None:
    endpoint.close_after = True
    for index in range(5):
        assert poster.post(CONNECTION_ID, f'{{"n":{index}}}'.encode()) is True
    assert [r.body for r in endpoint.received] == [f'{{"n":{index}}}'.encode() for index in range(5)]
    assert len(endpoint.connections) == 5


def test_posts_keep_their_connection_alive_between_posts(endpoint: Endpoint, poster: Poster) -> None:
    for _ in range(20):
        poster.post(CONNECTION_ID, b"{}")
    assert len(endpoint.received) == 20
    assert len(endpoint.connections) == 1


def test_parallel_posts_each_arrive_once_on_one_connection_per_thread(
    endpoint: Endpoint, poster: Poster
) -> None:
    post: Callable[[int], bool] = lambda index: poster.post(f"conn{index}=", f'{{"n":{index}}}'.encode())  # noqa: E731
    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(post, range(200)))
    assert sorted(r.path for r in endpoint.received) == sorted(
        f"/live/@connections/conn{i}%3D" for i in range(200)
    )
    assert len(endpoint.connections) <= 8
