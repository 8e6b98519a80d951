"""Following the WebSocket stream, with HTTP polling whenever the stream is down.

- Subscribing brings a snapshot, then an update after each slot that changed a pair, status
  messages, and a heartbeat at least every 30 s of silence: silence past ``silence_timeout_s``
  (a heartbeat half its interval late) is a dead connection, even one whose socket never said so.
- After a drop it reconnects after a full-jitter backoff (``backoff.py``), the ceiling reset only by
  a connection that lasted ``stable_after_s``, and subscribes again (the new snapshot replaces
  whatever was missed). A refused upgrade waits like a drop, and its Retry-After when longer.
- While the stream is down, prices come from HTTP reads on the poller's schedule, so they keep
  coming (connection ``polling``; ``down`` while the reads fail too); the schedule carries across
  reconnect attempts, so failing attempts never multiply the reads.
- The first state comes from one HTTP read, before the stream: it gives prices and the clock skew
  (the stream has no Date header) at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from market_data_client.api import DEFAULT_BASE_URL, normalise_pairs, stream_url_for
from market_data_client.async_client import AsyncPricesClient
from market_data_client.backoff import Backoff
from market_data_client.client import now_ms
from market_data_client.errors import ResponseFormatError
from market_data_client.poller import DEFAULT_INTERVAL_S, DEFAULT_REFRESH_S, PollSchedule, read_async
from market_data_client.state import DEFAULT_STALE_THRESHOLD_MS, PricesState
from market_data_client.tracker import Tracker

HEARTBEAT_S = 30.0  # the server's promise: a heartbeat at least every 30 s of silence
DEFAULT_SILENCE_TIMEOUT_S = 45.0  # a heartbeat late by half its interval: the service's advice
DEFAULT_STABLE_AFTER_S = 30.0  # a connection that lasted a heartbeat period proved the endpoint
OPEN_TIMEOUT_S = 10.0
MAX_MESSAGE_BYTES = 1 << 20


class StreamSilent(Exception):
    """Nothing heard for longer than the heartbeat allows."""


class StreamFollower:
    """``async for state in StreamFollower(["BTC/USDT"], base_url=...): ...``; see ``follow``."""

    def __init__(
        self, pairs: Iterable[str], *, base_url: str = DEFAULT_BASE_URL, stream_url: str | None = None,
        threshold_ms: float = DEFAULT_STALE_THRESHOLD_MS, poll_interval_s: float = DEFAULT_INTERVAL_S,
        refresh_s: float | None = DEFAULT_REFRESH_S, silence_timeout_s: float = DEFAULT_SILENCE_TIMEOUT_S,
        stable_after_s: float = DEFAULT_STABLE_AFTER_S, backoff: Backoff | None = None,
        client: AsyncPricesClient | None = None,
    ) -> None:  # fmt: skip
        self.pairs = normalise_pairs(pairs)
        self.stream_url = stream_url or stream_url_for(base_url)
        self.tracker = Tracker(self.pairs, threshold_ms=threshold_ms, connection="down")
        self.refresh_s = refresh_s
        self.silence_timeout_s = silence_timeout_s
        self.stable_after_s = stable_after_s
        self.backoff = backoff or Backoff()
        self._schedule = PollSchedule(poll_interval_s)
        self._client = client
        self._base_url = base_url
        self._next_read = 0.0  # monotonic: when the fallback reads next
        self.attempts = 0  # connection attempts, refused ones included: a reconnect storm shows here
        self.connects = 0  # connections opened
        self.last_failure = ""  # why the stream last ended or could not open

    def __aiter__(self) -> AsyncIterator[PricesState]:
        return self._states()

    async def _states(self) -> AsyncIterator[PricesState]:
        http = self._client or AsyncPricesClient(self._base_url)
        try:
            await self._read(http)
            yield self.tracker.state()
            while True:
                retry_after_s: float | None = None
                self.attempts += 1
                try:
                    ws = await connect(
                        self.stream_url, open_timeout=OPEN_TIMEOUT_S, ping_interval=None, close_timeout=2,
                        max_size=MAX_MESSAGE_BYTES,
                    )  # fmt: skip
                except InvalidStatus as exc:
                    self.last_failure = f"upgrade refused: {exc.response.status_code}"
                    retry_after_s = _seconds(exc.response.headers.get("Retry-After"))
                except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                    self.last_failure = f"cannot connect: {type(exc).__name__}: {exc}"
                else:
                    self.connects += 1
                    opened = time.monotonic()
                    async with contextlib.aclosing(self._on_stream(ws)) as states:
                        async for state in states:
                            yield state
                    if time.monotonic() - opened >= self.stable_after_s:
                        self.backoff.reset()
                self._set_fallback_connection()
                yield self.tracker.state(event="disconnected")
                wait = self.backoff.next_delay_s()
                until = time.monotonic() + max(wait, retry_after_s or 0.0)
                async with contextlib.aclosing(self._fallback(http, until)) as states:
                    async for state in states:
                        yield state
        finally:
            if self._client is None:
                await http.aclose()

    async def _on_stream(self, ws: ClientConnection) -> AsyncGenerator[PricesState, None]:
        """Subscribe and follow until the connection ends or falls silent (then closed)."""
        tracker = self.tracker
        try:
            await ws.send(json.dumps({"action": "subscribe", "pairs": list(self.pairs)}))
            heard = next_tick = time.monotonic()
            while True:
                now = time.monotonic()
                silent_at = heard + self.silence_timeout_s
                wake = min(silent_at, next_tick + self.refresh_s) if self.refresh_s else silent_at
                try:
                    text = await asyncio.wait_for(ws.recv(), timeout=max(0.0, wake - now))
                except TimeoutError:
                    if time.monotonic() >= silent_at:
                        raise StreamSilent(f"nothing heard for {self.silence_timeout_s:g} s") from None
                    next_tick = time.monotonic()
                    yield tracker.state(event="tick")
                    continue
                heard = time.monotonic()
                try:
                    changed = tracker.apply_message(text, now_ms())
                except ResponseFormatError as exc:
                    tracker.stream_error = str(exc)
                    continue
                if tracker.event == "snapshot":
                    tracker.connection = "stream"
                if changed:
                    next_tick = time.monotonic()
                    yield tracker.state()
        except (ConnectionClosed, OSError, StreamSilent) as exc:
            self.last_failure = f"stream ended: {type(exc).__name__}: {exc}"
        finally:
            # Closing a connection whose peer vanished waits close_timeout at most.
            with contextlib.suppress(Exception):
                await ws.close()

    async def _fallback(self, http: AsyncPricesClient, until: float) -> AsyncGenerator[PricesState, None]:
        """HTTP reads on the poll schedule until ``until`` (monotonic), when the stream is tried again."""
        while (now := time.monotonic()) < until:
            if now >= self._next_read:
                await self._read(http)
                yield self.tracker.state()
                continue
            wake = min(until, self._next_read)
            if self.refresh_s:
                wake = min(wake, now + self.refresh_s)
            await asyncio.sleep(wake - now)
            if time.monotonic() < min(until, self._next_read):
                yield self.tracker.state(event="tick")

    async def _read(self, http: AsyncPricesClient) -> None:
        self._next_read = time.monotonic() + await read_async(http, self.tracker, self._schedule)
        if self.tracker.connection != "stream":
            self._set_fallback_connection()

    def _set_fallback_connection(self) -> None:
        self.tracker.connection = "down" if self.tracker.outcome in ("error", "none") else "polling"


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
