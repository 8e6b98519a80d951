"""Phase: judge. What the exchanges answered becomes what the service serves: verdicts on pending
pairs and re-checks of listed ones (``verify``), then the served set after the status changes that
were stored, and the jump guard (``jumps``). Invalid tickers were refused by the adapters already.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fetcher.deps import Fetcher
from fetcher.exchanges.base import FetchResult
from fetcher.jumps import held_jumps
from fetcher.listings import Listing
from fetcher.pairs import Pairs
from fetcher.verify import Transition, decide_pending, recheck_listed
from market_data import cache, store
from market_data.models import Ticker
from market_data.observability import logger
from market_data.statuses import ACTIVE, SERVED, SUSPENDED


@dataclass
class Fetched:
    """Every exchange's part of the tick, together."""

    tickers: dict[str, Ticker] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # pair -> why it is not served this tick
    invalid: dict[str, str] = field(default_factory=dict)  # pair -> why its ticker was dropped

    @classmethod
    def combine(cls, outcomes: Mapping[str, FetchResult], unserved: Mapping[str, str]) -> Fetched:
        fetched = cls()
        for outcome in outcomes.values():
            fetched.tickers.update(outcome.tickers)
            fetched.missing.update(outcome.missing)
            fetched.invalid.update(outcome.invalid)
        fetched.missing.update(unserved)
        for pair, reason in fetched.invalid.items():
            fetched.missing[pair] = f"invalid ticker dropped: {reason}"
        return fetched


def verdicts(
    fetcher: Fetcher,
    pairs: Pairs,
    listings: Sequence[Listing],
    fetched: Fetched,
    *,
    listings_read: bool,
    now: int,
) -> list[Transition]:
    """Verdicts on pending pairs; re-checks of listed ones only when a listing came back just now."""
    settings = fetcher.deps.settings
    transitions = decide_pending(
        pairs.pending,
        listings,
        fetched.tickers,
        min_quote_volume=settings.whitelist_min_quote_volume,
        now=now,
        expire_after_ms=settings.whitelist_pending_expiry_ms,
        missing=fetched.missing,
        room=settings.whitelist_max_active - sum(1 for record in pairs.records if record.status in SERVED),
    )
    if listings_read:
        transitions += recheck_listed([r for r in pairs.records if r.status in SERVED], listings)
    return transitions


@dataclass
class Judged:
    """What the tick serves."""

    status: dict[str, str]  # every registry pair's status after this tick's stored changes
    listed: list[str]  # served: active pairs, and suspended ones from their last copy
    tickers: dict[str, Ticker]  # to write: active pairs' prices that passed the jump guard
    missing: dict[str, str]  # active or suspended pair -> why it has no new price this tick
    invalid: dict[str, str]
    held: dict[str, float] = field(default_factory=dict)  # jumped prices not written this tick

    @property
    def pairs_by_status(self) -> dict[str, int]:
        return dict(Counter(self.status.values()))

    @property
    def stale_pairs(self) -> int:
        """Active pairs whose price this tick did not refresh."""
        return sum(1 for pair in self.listed if self.status[pair] == ACTIVE and pair not in self.tickers)


def judge(
    fetcher: Fetcher, pairs: Pairs, applied: list[Transition], fetched: Fetched, *, cache_ok: bool
) -> Judged:
    status, reasons = pairs.status, pairs.reasons
    for transition in applied:
        status[transition.pair] = transition.to
        reasons[transition.pair] = transition.reason
    listed = sorted(pair for pair, state in status.items() if state in SERVED)
    missing = {pair: why for pair, why in fetched.missing.items() if status.get(pair) == ACTIVE}
    for pair in listed:
        if status[pair] == SUSPENDED:
            missing[pair] = f"suspended: {reasons[pair]}"
    judged = Judged(
        status=status,
        listed=listed,
        tickers={pair: ticker for pair, ticker in fetched.tickers.items() if status.get(pair) == ACTIVE},
        missing=missing,
        invalid=fetched.invalid,
    )
    hold_back_jumps(fetcher, judged, cache_ok=cache_ok)
    return judged


def hold_back_jumps(fetcher: Fetcher, judged: Judged, *, cache_ok: bool) -> None:
    """Drop from this tick's writes any price that jumped past MAX_PRICE_JUMP_RATIO from the last
    good one, unless it confirms the price held last tick; the held ones wait for the next tick.

    The last good price is the cache's; for a pair the cache has none of (it was flushed, failed
    over or is lost), DynamoDB's last known good, so that a bad print is never the first price a
    new cache serves. Held prices wait in the cache, and in this container while it is lost.
    """
    deps, state = fetcher.deps, fetcher.state
    last_good: dict[str, float] = {}
    unconfirmed = dict(state.held)
    if cache_ok:  # if it fails now, judged against DynamoDB's copies below, as while it is lost
        with contextlib.suppress(cache.CacheUnavailableError):
            last_good, unconfirmed = cache.read_previous(deps.redis, list(judged.tickers))
    without = [pair for pair in judged.tickers if pair not in last_good]
    if without:
        try:
            durable = store.read_last_known_good(deps.table, without)
        except store.StoreUnavailableError:
            durable = {}  # nothing to compare with: served as the exchange gave it
        last_good.update({pair: ticker.price for pair, ticker in durable.items()})
    prices = {pair: ticker.price for pair, ticker in judged.tickers.items()}
    judged.held = held_jumps(prices, last_good, unconfirmed, ratio=deps.settings.max_price_jump_ratio)
    state.held = dict(judged.held)
    for pair, price in judged.held.items():
        del judged.tickers[pair]
        logger.warning("price jump held back", pair=pair, price=price, last_good=last_good.get(pair))
