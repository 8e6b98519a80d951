"""Phase: read each exchange's listing when due. One ``Listing`` per exchange per container.

A listing says, pair by pair, the exchange's own name for it and whether it trades now (its
adapter decides that, in ``ListingEntry.trading``: the one rule for "servable"). It is re-read
every ``refresh_ms``, sooner when a name it gave was refused (the listing changed under us), and
when a pending pair was submitted after the last read (a verdict needs a listing read after it).

Names the exchange refused are left out of routing until a listing read after the refusal: while
one is, or while a pair is suspended, listings are read every ``watch_ms`` (a minute), so a pair
the exchange lists again is served again within it, and a stale name costs one bisection a read.
Verification reads the listing as the exchange gave it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fetcher.exchanges.base import Exchange, ExchangeError, FetchResult, ListingEntry, RateLimitedError
from market_data.clock import now_ms
from market_data.observability import logger

if TYPE_CHECKING:
    from fetcher.deps import Fetcher


# Errors of requests that were never sent.
NOT_SENT_KINDS = frozenset({"deadline"})


@dataclass
class Listing:
    """One exchange's listing as this container knows it."""

    exchange: str
    refresh_ms: int
    by_pair: dict[str, ListingEntry] | None = None  # None: never read, so nothing can be concluded
    read_at: int = 0  # when the listing last came back
    attempted_at: int = 0  # when it was last asked for
    next_read_at: int = 0
    conclusive: bool = True  # False while refreshes fail and the last copy stands in
    refused: ExchangeError | None = None  # HTTP 451: the exchange serves nothing to this location
    rejected: dict[str, int] = field(default_factory=dict)  # symbol -> when it was refused
    watch_ms: int = 60_000  # how often it is read while a pair is suspended or a name refused
    # Why the exchange could not be reached at all when last asked (its listing or its tickers):
    # no connection was made, so its listing cannot be read. None once it answers anything.
    unreachable: str | None = None

    def trading(self, pair: str) -> ListingEntry | None:
        """The pair's entry when the exchange trades it now."""
        entry = (self.by_pair or {}).get(pair)
        return entry if entry is not None and entry.trading else None

    def entry(self, pair: str) -> ListingEntry | None:
        """The pair's entry whatever its status (for the reasons users read)."""
        return (self.by_pair or {}).get(pair)

    def routable(self) -> Mapping[str, ListingEntry] | None:
        """Trading pairs whose name the exchange has not refused since the last regular read;
        None when the listing is unknown."""
        if self.by_pair is None:
            return None
        return {
            pair: entry
            for pair, entry in self.by_pair.items()
            if entry.trading and entry.symbol not in self.rejected
        }

    def known_since(self, moment: int) -> bool:
        """Read (and not an old copy kept while refreshes fail) at or after ``moment``."""
        return self.by_pair is not None and self.conclusive and self.read_at >= moment

    def due(self, now: int, *, needed_after: int = 0) -> bool:
        """``needed_after``: a listing read before then cannot judge a pair submitted since."""
        return self.by_pair is None or now >= self.next_read_at or self.attempted_at < needed_after

    def read(self, exchange: Exchange, now: int) -> None:
        """Read the listing; raises RateLimitedError (a ban must pause the exchange) and, when no
        copy is kept, ExchangeError. A failed refresh keeps the last copy until the next regular read."""
        self.attempted_at = now
        try:
            by_pair = exchange.listing()
        except RateLimitedError:
            self.unreachable = None
            raise
        except ExchangeError as exc:
            self.unreachable = exc.unreachable
            self.next_read_at = now + self.refresh_ms
            if exc.kind == "restricted_location":
                # The exchange refuses this location: it lists nothing it would serve us.
                self.by_pair, self.refused, self.conclusive, self.read_at = {}, exc, True, now
                raise
            self.conclusive = False
            if self.by_pair is not None:
                logger.warning("listing refresh failed; using the previous one", exchange=exchange.name)
            raise
        # A name refused before this read is tried again if this read lists it as trading.
        self.rejected = {symbol: at for symbol, at in self.rejected.items() if at >= now}
        # When the listing was actually read (not when the tick began): a submission made while
        # this tick started is then judged on this read, not one tick later.
        self.by_pair, self.refused, self.conclusive, self.unreachable = by_pair, None, True, None
        self.read_at = now_ms()
        self.next_read_at = now + self.refresh_ms

    def answered(self, outcome: FetchResult) -> None:
        """What a ticker fetch taught about reaching the exchange: any answer (or any failure
        other than a connection never made) means it was reached."""
        # A request that never left (the slot's time ran out) says nothing either way.
        errors = [error for error in outcome.errors if error.kind not in NOT_SENT_KINDS]
        if outcome.tickers or any(error.unreachable is None for error in errors):
            self.unreachable = None
        elif errors:
            self.unreachable = errors[-1].unreachable

    def reject(self, symbol: str, now: int) -> None:
        self.rejected[symbol] = now
        self.watch()

    def read_again(self) -> None:
        """The listing changed under us: read it again soon (once a ``watch_ms`` at most)."""
        self.watch()

    def watch(self) -> None:
        """Read within ``watch_ms`` of the last read (at once when that is past)."""
        self.next_read_at = min(self.next_read_at, self.read_at + self.watch_ms)


def watch_listings(fetcher: Fetcher, suspended: list[str]) -> str:
    """While a pair is suspended or a name refused, every listing is read once a ``watch_ms``;
    returns why, for health ("" when nothing is watched)."""
    refused = [
        f"{name} refused {symbol}"
        for name, memory in fetcher.state.exchanges.items()
        for symbol in sorted(memory.listing.rejected)
    ]
    if not suspended and not refused:
        return ""
    for memory in fetcher.state.exchanges.values():
        memory.listing.watch()
    every_s = fetcher.deps.settings.listing_watch_ms // 1000
    causes = [f"suspended {', '.join(suspended)}"] * bool(suspended) + refused
    return f"listings read every {every_s} s while: " + "; ".join(causes)


def read_due_listings(
    fetcher: Fetcher,
    outcomes: dict[str, FetchResult],
    unavailable: Mapping[str, str],
    now: int,
    *,
    needed_after: int,
) -> set[str]:
    """Read, side by side, the listings due of the exchanges that may be asked; returns the names
    of those whose listing came back this tick (their pairs are re-checked)."""
    asked = [name for name in fetcher.deps.exchanges if name not in unavailable]

    def read(name: str) -> bool:
        return _read_listing(fetcher, name, outcomes[name], now, needed_after)

    return {
        name for name, came in zip(asked, list(fetcher.deps.executor.map(read, asked)), strict=True) if came
    }


def _read_listing(fetcher: Fetcher, name: str, outcome: FetchResult, now: int, needed_after: int) -> bool:
    listing = fetcher.state.exchanges[name].listing
    if not listing.due(now, needed_after=needed_after):
        return False
    outcome.requests += 1
    try:
        listing.read(fetcher.deps.exchanges[name], now)
    except ExchangeError as exc:
        outcome.failed(exc)
        return False
    except Exception as exc:  # one exchange's bug must not cost the others' prices
        logger.exception("listing read failed", exchange=name)
        outcome.failed(ExchangeError("internal", f"{type(exc).__name__}: {exc}"))
        return False
    return True
