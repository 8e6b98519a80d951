"""Phase: load the state every invocation shares (failure holds, request pacing, slow figures)
from the slot's opening, and write back one diff with the tick.

The cache holds the shared copy; this container's copy stands in while it is lost. Only what this
tick decided is written back, field by field, so an overlapping invocation's changes survive.
"""

from __future__ import annotations

from collections.abc import Mapping

from fetcher.deps import Fetcher
from fetcher.exchanges.pacing import PacedExchange
from fetcher.routing import FailureHolds
from fetcher.slot import OpenedSlot
from market_data import cache
from market_data.clock import now_ms
from market_data.contracts import CircuitState


def load_shared_state(fetcher: Fetcher, opened: OpenedSlot) -> dict[str, list[str]]:
    """Take over the shared state; returns, per exchange, the cached figures not fit to serve."""
    state, shared = fetcher.state, opened.shared
    if (
        shared.holds is not None
    ):  # the holds every invocation shares; this container's while the cache is lost
        stored = dict(shared.holds)
        if state.holds_unsaved is not None:  # the last tick's changes, which its cache write lost
            changed, ended = state.holds_unsaved
            stored = {key: value for key, value in {**stored, **changed}.items() if key not in ended}
        state.holds, state.holds_stored = FailureHolds.from_fields(stored), stored
    dropped: dict[str, list[str]] = {}
    for name, exchange in fetcher.deps.exchanges.items():
        # Another invocation may have asked this exchange at the end of the last slot.
        if isinstance(exchange, PacedExchange):
            dropped[name] = exchange.resume(
                shared.pace.get(name), shared.kept.get(name, {}), now_ms=opened.started_at
            )
    return dropped


def shared_state_diff(
    fetcher: Fetcher,
    opened: OpenedSlot,
    *,
    asked: set[str],
    circuits: Mapping[str, CircuitState],
    dropped: dict[str, list[str]],
) -> cache.SharedStateDiff:
    """What this tick changed: circuits and pacing of the exchanges it asked, holds that changed,
    figures it read. Holds stay "unsaved" until ``confirm_written`` (a lost write is merged again
    into the next slot's load)."""
    state = fetcher.state
    holds = state.holds.as_fields(now_ms())
    changed = {key: value for key, value in holds.items() if state.holds_stored.get(key) != value}
    ended = [key for key in state.holds_stored if key not in holds]
    state.holds_unsaved = (changed, ended)
    pace: dict[str, int] = {}
    kept: dict[str, dict[str, bytes]] = {}
    for name, exchange in fetcher.deps.exchanges.items():
        if isinstance(exchange, PacedExchange):
            carried = exchange.carried(since_ms=opened.started_at, asked=name in asked)
            if carried.pace_ms is not None:
                pace[name] = carried.pace_ms
            kept[name] = carried.kept
    return cache.SharedStateDiff(
        circuits=dict(circuits), holds=changed, holds_ended=ended, pace=pace, kept=kept, kept_dropped=dropped
    )


def confirm_written(fetcher: Fetcher) -> None:
    """The tick's write stored the diff: the holds as written are the stored ones now."""
    state = fetcher.state
    changed, ended = state.holds_unsaved or ({}, [])
    state.holds_stored = {
        key: value for key, value in {**state.holds_stored, **changed}.items() if key not in ended
    }
    state.holds_unsaved = None
