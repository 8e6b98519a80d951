"""``python -m bench.standin``: API Gateway's management API and Lambda's Invoke API without what
is behind them, in a process of its own, for the broadcaster's scaling figures.

A post to ``/@connections/{id}`` (under a stage too) is read whole and answered 200 with the
headers API Gateway sends, after ``delay_ms`` when one is set, with no WebSocket behind the id:
thousands of connections cost no socket each, and the broadcaster's own work is what is timed.
``POST /2015-03-31/functions/{name}/invocations`` records the payload and answers 202, as an
asynchronous invoke does. ``POST /_config`` sets ``{"delay_ms": n}``; ``GET /_recorded`` answers
what was received since the last call (posts, their bytes, the invocations' payloads) and forgets it.

In its own process so that its parsing never takes the broadcaster's interpreter lock; asyncio, so
one thread answers every kept-alive connection of the broadcaster's pool. It prints
``listening <port>`` once serving, and stops when its standard input closes.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import secrets
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

INVOKE_PREFIX = "/2015-03-31/functions/"


@dataclass
class Received:
    delay_s: float = 0.0
    posts: int = 0
    post_body_bytes: int = 0
    invocations: list[Any] = field(default_factory=list)

    def take(self) -> dict[str, Any]:
        taken = {
            "posts": self.posts,
            "post_body_bytes": self.post_body_bytes,
            "invocations": self.invocations,
        }
        self.posts, self.post_body_bytes, self.invocations = 0, 0, []
        return taken


def _reply(status: int, reason: str, body: bytes = b"", content_type: str = "application/json") -> bytes:
    # The headers API Gateway's management API answers a post with, so response bytes are realistic.
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: keep-alive\r\n"
        f"x-amzn-RequestId: {uuid.uuid4()}\r\n"
        f"x-amz-apigw-id: {secrets.token_urlsafe(12)[:16]}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


async def _answer(received: Received, method: str, target: str, body: bytes) -> bytes:
    path = target.split("?", 1)[0]
    if method == "POST" and "/@connections/" in path:
        if received.delay_s:
            await asyncio.sleep(received.delay_s)
        received.posts += 1
        received.post_body_bytes += len(body)
        return _reply(200, "OK")
    if method == "POST" and path.startswith(INVOKE_PREFIX) and path.endswith("/invocations"):
        received.invocations.append(json.loads(body or b"{}"))
        return _reply(202, "Accepted")
    if method == "POST" and path == "/_config":
        received.delay_s = float(json.loads(body or b"{}").get("delay_ms", 0)) / 1000
        return _reply(204, "No Content")
    if method == "GET" and path == "/_recorded":
        return _reply(200, "OK", json.dumps(received.take()).encode())
    return _reply(404, "Not Found", b'{"message": "Not Found"}')


async def _serve_connection(received: Received, reader: asyncio.StreamReader, writer: Any) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            body = await reader.readexactly(length) if length else b""
            writer.write(await _answer(received, method, target, body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    except asyncio.CancelledError:  # stopping: the client's connection simply ends
        pass
    finally:
        writer.close()


async def _main() -> None:
    received = Received()
    server = await asyncio.start_server(
        lambda reader, writer: _serve_connection(received, reader, writer), "127.0.0.1", 0, backlog=512
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening {port}", flush=True)
    loop = asyncio.get_running_loop()
    # Standard input closing (the benchmark ending, however it ends) stops the server.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(_main())
