"""The terminal table: one state as lines of text, and a screen that redraws them in place.

On a terminal the table is redrawn over itself every second (ANSI escapes: cursor up, clear down),
so ages count up live. Anywhere else (a pipe, a file, a log) each new state that brought something
(an answer, an update, a status change; not the once-a-second re-ageing) is printed as plain lines.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TextIO

from market_data_client.state import PairView, PricesState

COLUMNS = ("PAIR", "PRICE", "24H", "AGE", "EXCHANGE", "SOURCE", "STALE")
QUIET_EVENTS = frozenset({"tick", "heartbeat"})
_GREEN, _YELLOW, _RED, _DIM, _RESET = "\x1b[32m", "\x1b[33m", "\x1b[31m", "\x1b[2m", "\x1b[0m"


def format_price(price: float) -> str:
    if price >= 1:
        return f"{price:,.2f}" if price >= 100 else f"{price:,.4f}"
    return f"{price:.6g}"


def format_age(age_ms: float | None) -> str:
    if age_ms is None:
        return "-"
    seconds = age_ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_skew(skew_ms: float | None) -> str:
    return "unknown" if skew_ms is None else f"{skew_ms / 1000:+.1f} s"


def _row(view: PairView) -> tuple[str, ...]:
    entry = view.entry
    if entry is None:
        return (view.pair, "-", "-", "-", "-", "-", view.reason)
    stale = f"STALE: {view.reason}" if view.stale else "no"
    return (
        view.pair, format_price(entry.price), f"{entry.change_24h:+.2f}%", format_age(view.age_ms),
        entry.exchange, entry.source, stale,
    )  # fmt: skip


def _status_line(state: PricesState) -> str:
    parts = [f"connection: {state.connection}", f"status: {state.status}"]
    if state.service_status:
        parts.append(f"service: {state.service_status}")
    parts.append(f"clock skew: {format_skew(state.skew_ms)}")
    parts.append(f"stale after {state.threshold_ms / 1000:g} s")
    return "  ".join(parts)


def _notes(state: PricesState) -> list[str]:
    notes = []
    if state.service_reason:
        notes.append(f"service: {state.service_reason}")
    if state.missing_pairs:
        notes.append(f"missing: {', '.join(state.missing_pairs)}")
    if state.not_listed_pairs:
        notes.append(f"not listed (will not come until listed): {', '.join(state.not_listed_pairs)}")
    if state.status == "unavailable" and state.retry_after_s is not None:
        notes.append(f"unavailable: the service asks to retry after {state.retry_after_s:g} s")
    if state.error:
        notes.append(f"error: {state.error}")
    return notes


def render(state: PricesState, *, color: bool = False) -> list[str]:
    rows = [COLUMNS, *(_row(view) for view in state.pairs.values())]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.rjust(w) if i in (1, 2, 3) else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=False))
        ]
        line = "  ".join([*cells, row[-1]])
        if color and index > 0:
            view = list(state.pairs.values())[index - 1]
            tint = _DIM if view.entry is None else (_YELLOW if view.stale else _GREEN)
            line = f"{tint}{line}{_RESET}"
        lines.append(line)
    status = _status_line(state)
    if color:
        tint = {"polling": _GREEN, "stale": _YELLOW}.get(state.status, _RED)
        status = f"{tint}{status}{_RESET}"
    return [status, *lines, *_notes(state)]


class Screen:
    """Where states are shown: redrawn in place on a terminal, appended as plain lines elsewhere."""

    def __init__(self, out: TextIO, *, live: bool | None = None) -> None:
        self.out = out
        self.live = out.isatty() if live is None else live
        self._drawn = 0
        self._last_seen: tuple[object, ...] = ()

    def show(self, state: PricesState) -> None:
        if self.live:
            self._redraw(render(state, color=True))
            return
        # Piped: a line per answer, and per quiet moment that changed what a reader must know (a
        # price turning stale by age alone, the connection dropping).
        seen = (state.status, state.stale_pairs, state.connection)
        changed, self._last_seen = seen != self._last_seen, seen
        if state.event not in QUIET_EVENTS or changed:
            stamp = time.strftime("%H:%M:%S")
            self.out.write("".join(f"{stamp} {line}\n" for line in render(state)))
            self.out.flush()

    def _redraw(self, lines: Sequence[str]) -> None:
        # Up to the first line drawn last time, clear everything below, draw again.
        prefix = f"\x1b[{self._drawn}F\x1b[J" if self._drawn else ""
        self.out.write(prefix + "".join(f"{line}\n" for line in lines))
        self.out.flush()
        self._drawn = len(lines)
