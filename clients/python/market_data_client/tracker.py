"""What has been received so far, for one set of pairs: the entries, the clock skew, the last read's
outcome and the stream's messages. The poller and the stream follower feed it; ``state()`` turns it
into what to show, at any moment (ages grow between answers)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from market_data_client.api import PricesAnswer
from market_data_client.errors import ApiError, MarketDataError, UnavailableError
from market_data_client.models import PriceEntry, parse_prices
from market_data_client.skew import ClockSkew
from market_data_client.state import (
    DEFAULT_STALE_THRESHOLD_MS,
    Connection,
    Outcome,
    PricesState,
    compute_state,
)


class Tracker:
    def __init__(
        self, pairs: tuple[str, ...], *, threshold_ms: float = DEFAULT_STALE_THRESHOLD_MS,
        connection: Connection = "polling", skew: ClockSkew | None = None,
    ) -> None:  # fmt: skip
        self.pairs = pairs
        self.threshold_ms = threshold_ms
        self.connection: Connection = connection
        self.skew = skew or ClockSkew()
        self.entries: dict[str, PriceEntry] = {}
        self.not_listed: frozenset[str] = frozenset()
        self.answered = False  # the server has said which pairs it has (an answer or a snapshot)
        self.outcome: Outcome = "none"
        self.error = ""
        self.retry_after_s: float | None = None
        self.service_status = ""
        self.service_reason = ""
        self.stream_error = ""  # the stream's last ``error`` message (the connection stays open)
        self.event = "start"

    # --- HTTP reads --------------------------------------------------------------------------------

    def record_answer(self, answer: PricesAnswer) -> None:
        self.skew.observe_date(answer.date, answer.sent_ms, answer.received_ms)
        if not answer.not_modified:
            self._observe_fetched(answer.entries.values(), answer.received_ms)
        # What the server has now replaces what it had: a pair it no longer serves is missing.
        self.entries = {pair: answer.entries[pair] for pair in self.pairs if pair in answer.entries}
        self.not_listed = frozenset(answer.not_listed)
        self.answered, self.outcome, self.error, self.retry_after_s = True, "ok", "", None
        self.event = "not_modified" if answer.not_modified else "answer"

    def record_failure(self, failure: MarketDataError, sent_ms: float, received_ms: float) -> None:
        """A read that failed. Entries already held are kept: they age, and turn stale by age."""
        if isinstance(failure, ApiError):
            self.skew.observe_date(failure.date, sent_ms, received_ms)
        if isinstance(failure, UnavailableError):
            # Nothing to serve yet, and the server says when to ask again: not an error.
            self.outcome, self.error, self.retry_after_s = "unavailable", "", failure.retry_after_s
            self.event = "unavailable"
        else:
            self.outcome, self.error, self.retry_after_s = "error", str(failure), None
            self.event = "error"

    # --- stream messages ---------------------------------------------------------------------------

    def apply_message(self, text: str | bytes, received_ms: float) -> bool:
        """One WebSocket message; False for one that changes nothing shown (a candle, unknown)."""
        try:
            message: Any = json.loads(text)
        except ValueError:
            self.stream_error = f"not JSON: {str(text)[:80]!r}"
            return False
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "snapshot":
            entries = parse_prices(message.get("prices", {}), "snapshot.prices")
            self._observe_fetched(entries.values(), received_ms)
            self.entries = {pair: entries[pair] for pair in self.pairs if pair in entries}
            self.answered, self.outcome, self.error, self.retry_after_s = True, "ok", "", None
            self._service(message)
        elif kind == "update":
            entries = parse_prices(message.get("prices", {}), "update.prices")
            self._observe_fetched(entries.values(), received_ms)
            self.entries.update({pair: entries[pair] for pair in self.pairs if pair in entries})
            self.answered, self.outcome, self.error, self.retry_after_s = True, "ok", "", None
        elif kind == "status":
            self._service(message)
        elif kind == "heartbeat":
            at = message.get("at")
            if isinstance(at, int | float) and not isinstance(at, bool):
                self.skew.observe_server_time(at, received_ms)
        elif kind == "error":
            self.stream_error = f"{message.get('error')}: {message.get('message')}"
        else:
            return False
        self.event = str(kind)
        return True

    def _observe_fetched(self, entries: Iterable[PriceEntry], received_ms: float) -> None:
        """The service stamped ``fetchedAt`` before sending: its clock read at least the newest one
        then. Updates leave right after the fetch, so this bound is tight, much finer than Date's
        second."""
        newest = max((entry.fetched_at for entry in entries), default=None)
        if newest is not None:
            self.skew.observe_server_time(newest, received_ms)

    def _service(self, message: dict[str, Any]) -> None:
        status, reason = message.get("status"), message.get("reason")
        if isinstance(status, str):
            self.service_status = status
            self.service_reason = reason if isinstance(reason, str) else ""

    # --- what to show ------------------------------------------------------------------------------

    def state(self, local_now_ms: float | None = None, event: str | None = None) -> PricesState:
        now = time.time() * 1000 if local_now_ms is None else local_now_ms
        known = self.skew.known
        return compute_state(
            self.pairs, self.entries,
            server_now_ms=self.skew.server_now_ms(now) if known else None,
            threshold_ms=self.threshold_ms, outcome=self.outcome, not_listed=self.not_listed,
            answered=self.answered, connection=self.connection,
            skew_ms=self.skew.offset_ms if known else None, event=event or self.event, error=self.error,
            retry_after_s=self.retry_after_s, service_status=self.service_status,
            service_reason=self.service_reason,
        )  # fmt: skip
