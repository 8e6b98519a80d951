"""What a screen should show, computed from what was received: one pure function, no I/O.

The three troubles users of such clients report most, and the rule here against each:
- a stale price that looks fresh: a pair is stale when the server says so (its ``stale`` flag, or a
  ``last_known_good`` copy) OR when its age passes the client's threshold. The age keeps growing
  between answers (states are recomputed as time passes), so a silent connection cannot keep a price
  looking fresh;
- a false stale flag from a clock that is off: the age is measured on the server's clock
  (``skew.py``), never on this machine's;
- a false stale flag on first load: a pair with no data yet is missing (``loading``), never stale,
  and nothing received yet is ``unavailable``, never ``stale`` nor ``error``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from market_data_client.models import PriceEntry

# polling: every pair with data is fresh; stale: some are stale; unavailable: the server has
# nothing to serve yet (503) or nothing has been received; error: the last read failed (network,
# 5xx, an unexpected answer). Source design 002's names, kept for its users.
Status = Literal["polling", "stale", "unavailable", "error"]
# How prices arrive: the WebSocket stream, HTTP reads while the stream is down, or neither.
Connection = Literal["stream", "polling", "down"]
# What the last read or message was: "none" before any.
Outcome = Literal["none", "ok", "unavailable", "error"]

# The server calls a price stale 5 s after its exchange time (MARKET_DATA_CACHE_STALE_TTL_MS) and a
# reader polling every 4 s holds an answer that long again; a second for the Date header's
# resolution and two for the way there and back: past 12 s, a price is stale whatever it said.
DEFAULT_STALE_THRESHOLD_MS = 12_000


@dataclass(frozen=True, slots=True)
class PairView:
    pair: str
    entry: PriceEntry | None  # None: no data for it (loading, missing or not listed)
    age_ms: float | None  # on the server's clock; None without an entry or a clock estimate
    stale: bool
    reason: str  # why stale, or why there is no entry; "" for a fresh price


@dataclass(frozen=True, slots=True)
class PricesState:
    status: Status
    pairs: Mapping[str, PairView]  # in the order asked
    stale_pairs: tuple[str, ...]
    missing_pairs: tuple[str, ...]  # no price, and listed or not known to be unlisted: may come
    not_listed_pairs: tuple[str, ...]  # no price and not listed: will not come until listed
    last_server_update: int | None  # the newest fetchedAt (ms) among the entries
    connection: Connection
    threshold_ms: float
    skew_ms: float | None  # the server's clock minus this machine's; None before any estimate
    event: str  # what produced this state: "answer", "not_modified", "update", "tick", ...
    error: str = ""  # the last failure's message, while the status is "error"
    retry_after_s: float | None = None  # the server's Retry-After, while "unavailable"
    service_status: str = ""  # the stream's last status message: "ok", "degraded", "down"
    service_reason: str = ""

    @property
    def is_stale(self) -> bool:
        return bool(self.stale_pairs)

    @property
    def entries(self) -> dict[str, PriceEntry]:
        return {pair: view.entry for pair, view in self.pairs.items() if view.entry is not None}


def view_pair(
    pair: str, entry: PriceEntry | None, server_now_ms: float | None, threshold_ms: float, *,
    not_listed: bool = False, answered: bool = False,
) -> PairView:  # fmt: skip
    """One pair's view. ``answered``: the server has answered for it (so no entry means missing,
    not loading)."""
    if entry is None:
        reason = "not listed" if not_listed else ("missing" if answered else "loading")
        return PairView(pair, None, None, False, reason)
    # A timestamp ahead of the server's clock (the exchange's clock, or the estimate's last
    # fraction of a second) is an age of 0, not a negative one.
    age_ms = None if server_now_ms is None else max(0.0, server_now_ms - entry.timestamp)
    if entry.source == "last_known_good":
        return PairView(pair, entry, age_ms, True, "last known good copy: the service has not refreshed it")
    if entry.stale:
        return PairView(pair, entry, age_ms, True, "the server marks it stale")
    if age_ms is not None and age_ms > threshold_ms:
        reason = f"{age_ms / 1000:.1f} s old, past the {threshold_ms / 1000:g} s threshold"
        return PairView(pair, entry, age_ms, True, reason)
    return PairView(pair, entry, age_ms, False, "")


def compute_state(
    pairs: Sequence[str], entries: Mapping[str, PriceEntry], *, server_now_ms: float | None,
    threshold_ms: float = DEFAULT_STALE_THRESHOLD_MS, outcome: Outcome = "ok",
    not_listed: frozenset[str] = frozenset(), answered: bool = True, connection: Connection = "polling",
    skew_ms: float | None = None, event: str = "answer", error: str = "", retry_after_s: float | None = None,
    service_status: str = "", service_reason: str = "",
) -> PricesState:  # fmt: skip
    """The state for ``pairs`` given the entries held now. ``server_now_ms``: the server's clock
    now (this machine's corrected for skew); None when there is no estimate yet, and then only the
    server's own flags decide stale."""
    views = {
        pair: view_pair(
            pair,
            entries.get(pair),
            server_now_ms,
            threshold_ms,
            not_listed=pair in not_listed,
            answered=answered,
        )
        for pair in pairs
    }
    present = [view for view in views.values() if view.entry is not None]
    stale_pairs = tuple(view.pair for view in present if view.stale)
    status: Status
    if outcome == "error":
        status = "error"
    elif outcome in ("none", "unavailable") or not present:
        status = "unavailable"
    elif stale_pairs:
        status = "stale"
    else:
        status = "polling"
    return PricesState(
        status=status,
        pairs=views,
        stale_pairs=stale_pairs,
        missing_pairs=tuple(view.pair for view in views.values() if view.reason in ("missing", "loading")),
        not_listed_pairs=tuple(view.pair for view in views.values() if view.reason == "not listed"),
        last_server_update=max((view.entry.fetched_at for view in present if view.entry), default=None),
        connection=connection,
        threshold_ms=threshold_ms,
        skew_ms=skew_ms,
        event=event,
        error=error if status == "error" else "",
        retry_after_s=retry_after_s if outcome == "unavailable" else None,
        service_status=service_status,
        service_reason=service_reason,
    )
