"""``python -m bench.stream_clients URL CLIENTS PAIRS_JSON PAIRS_PER_CLIENT``: WebSocket clients for
the delivery figures, in a process of their own so that reading a thousand sockets never takes the
gateway's or the broadcaster's interpreter lock.

Each client connects to URL (at most ``CONNECTING_AT_ONCE`` at a time), subscribes to
PAIRS_PER_CLIENT of the pairs (client ``i`` takes the next ones round the list, so every pair has
subscribers) and waits for its snapshot. Then one line on stdout: ``{"ready", "failed", "seconds",
"open_files"}``. From then on every message is recorded with ``time.time()`` taken as soon as it is
read: an update by its ``slot``, other kinds counted with their bytes. A line ``report`` on stdin is
answered with one line ``{"updates": {slot_ms: [receipt, ...]}, "per_client": ..., "kinds": ...}``,
and the process exits, its sockets closing with it.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import Counter, defaultdict

from websockets.asyncio.client import ClientConnection, connect

CONNECTING_AT_ONCE = 25
OPEN_TIMEOUT_S = 30.0
SNAPSHOT_TIMEOUT_S = 30.0
CONNECT_ATTEMPTS = 3


def raise_open_files(needed: int) -> tuple[int, int]:
    """The soft limit on open files raised towards ``needed`` (never past the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return soft, hard


class Recorder:
    def __init__(self) -> None:
        self.updates: dict[int, list[float]] = defaultdict(list)
        self.updates_per_client: Counter[int] = Counter()
        self.kinds: Counter[str] = Counter()
        self.kind_bytes: Counter[str] = Counter()
        self.update_bytes_samples: list[int] = []

    def record(self, client: int, message: str | bytes, received: float) -> None:
        data = json.loads(message)
        kind = str(data.get("type"))
        self.kinds[kind] += 1
        size = len(message.encode() if isinstance(message, str) else message)
        self.kind_bytes[kind] += size
        if kind == "update":
            self.updates[int(data["slot"])].append(received)
            self.updates_per_client[client] += 1
            if len(self.update_bytes_samples) < 1000:
                self.update_bytes_samples.append(size)


async def _open(url: str, client: int, pairs: list[str], gate: asyncio.Semaphore) -> ClientConnection:
    last: Exception | None = None
    for _ in range(CONNECT_ATTEMPTS):
        async with gate:
            try:
                ws = await connect(
                    url, ping_interval=None, compression=None, open_timeout=OPEN_TIMEOUT_S,
                    close_timeout=1, max_queue=None,
                )  # fmt: skip
                await ws.send(json.dumps({"action": "subscribe", "pairs": pairs}))
                deadline = time.monotonic() + SNAPSHOT_TIMEOUT_S
                while True:
                    message = await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.01))
                    if json.loads(message).get("type") == "snapshot":
                        return ws
            except Exception as exc:  # a refused upgrade, a closed connection, a timeout: try again
                last = exc
        await asyncio.sleep(0.5)
    raise RuntimeError(f"client {client}: {type(last).__name__}: {last}")


async def _listen(ws: ClientConnection, client: int, recorder: Recorder) -> None:
    try:
        async for message in ws:
            recorder.record(client, message, time.time())
    except Exception:  # the connection ended: what it received is recorded
        return


async def _main(url: str, clients: int, pairs: list[str], per_client: int) -> None:
    soft, hard = raise_open_files(clients + 256)
    gate = asyncio.Semaphore(CONNECTING_AT_ONCE)
    started = time.monotonic()
    chosen = [[pairs[(i + k) % len(pairs)] for k in range(per_client)] for i in range(clients)]
    opened = await asyncio.gather(
        *(_open(url, i, chosen[i], gate) for i in range(clients)), return_exceptions=True
    )
    connections = [(i, ws) for i, ws in enumerate(opened) if not isinstance(ws, BaseException)]
    failures = [str(ws) for ws in opened if isinstance(ws, BaseException)]
    recorder = Recorder()
    listeners = [asyncio.create_task(_listen(ws, i, recorder)) for i, ws in connections]
    print(
        json.dumps({
            "ready": len(connections), "failed": len(failures), "failures": failures[:5],
            "seconds": round(time.monotonic() - started, 1), "open_files": [soft, hard],
        }),
        flush=True,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    while (await loop.run_in_executor(None, sys.stdin.readline)).strip() not in ("report", ""):
        pass
    report = {
        "updates": {str(slot): times for slot, times in recorder.updates.items()},
        "per_client": sorted(Counter(recorder.updates_per_client.values()).items()),
        "clients_with_updates": len(recorder.updates_per_client),
        "kinds": dict(recorder.kinds),
        "kind_bytes": dict(recorder.kind_bytes),
        "update_bytes": recorder.update_bytes_samples,
    }
    print(json.dumps(report), flush=True)
    for task in listeners:
        task.cancel()


if __name__ == "__main__":
    url, count, pairs_json, per_client = sys.argv[1:5]
    asyncio.run(_main(url, int(count), json.loads(pairs_json), int(per_client)))
