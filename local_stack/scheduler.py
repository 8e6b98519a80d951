"""EventBridge's ``rate(1 minute)`` for the local stack: the fetcher invoked every minute, in a thread."""

from __future__ import annotations

import threading
import time
from typing import Any

from local_stack.lambda_context import LocalLambdaContext
from local_stack.services import say

SCHEDULE_SECONDS = 60  # rate(1 minute)
# How long stopping waits for a running fetcher invocation: its slot's requests end with the slot
# (FETCH_INTERVAL_MS, 10 s at most), and a wait for the next slot ends with that slot's start.
STOP_WAIT_S = 15.0


class Scheduler:
    """EventBridge ``rate(1 minute)``: a fetcher invocation every minute, overlapping like on AWS."""

    def __init__(self, handler: Any, timeout_s: int) -> None:
        self._handler, self._timeout_s = handler, timeout_s
        self._stop = threading.Event()
        self._running: list[tuple[threading.Thread, LocalLambdaContext]] = []
        self._thread = threading.Thread(target=self._run, name="schedule", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            context = LocalLambdaContext("FetcherFunction", self._timeout_s)
            event = {"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}
            thread = threading.Thread(target=self._invoke, args=(event, context), daemon=True)
            self._running = [(t, c) for t, c in self._running if t.is_alive()] + [(thread, context)]
            thread.start()
            self._stop.wait(SCHEDULE_SECONDS)

    def _invoke(self, event: dict[str, Any], context: LocalLambdaContext) -> None:
        try:
            self._handler(event, context)
        except Exception as exc:  # as on AWS, a failed invocation is logged and the next one comes
            say(f"fetcher invocation failed: {type(exc).__name__}: {exc}")

    def stop(self, wait_s: float = STOP_WAIT_S) -> bool:
        """No invocation starts any more; the running ones are told no time is left (each returns
        once its current slot's writes are done, or at once while waiting for a slot) and waited
        for, ``wait_s`` at most. True when every one returned: only then are the servers they
        write to safe to stop without a failed write in the log."""
        self._stop.set()
        self._thread.join(wait_s)  # an invocation the schedule was starting is in ``_running`` now
        running = list(self._running)
        for _, context in running:
            context.cancel()
        deadline = time.monotonic() + wait_s
        for thread, _ in running:
            thread.join(max(deadline - time.monotonic(), 0))
        return not any(thread.is_alive() for thread, _ in running)
