"""Whitelist verification and re-checks: decisions from the exchanges' own listings, nothing else.

Pure functions over what the tick already has (each configured exchange's listing and the tickers
it fetched), so user submissions never cost an extra exchange call per pair, and a timeout, a 5xx
or a ban can never change a status: only listings the exchanges actually returned can.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from market_data.models import PairRecord, Ticker
from market_data.statuses import ACTIVE, PENDING, REJECTED, SUSPENDED

if TYPE_CHECKING:
    from fetcher.listings import Listing


@dataclass(frozen=True)
class Transition:
    pair: str
    to: str
    reason: str
    allowed_from: tuple[str, ...]
    exchange: str | None = None
    symbol: str | None = None
    verified: bool = False


def decide_pending(
    pending: Iterable[PairRecord],
    listings: Sequence[Listing],
    tickers: Mapping[str, Ticker],
    *,
    min_quote_volume: float,
    now: int,
    expire_after_ms: int,
    missing: Mapping[str, str],
    room: int,
) -> list[Transition]:
    """Verdicts for pending pairs; a pair without a verdict stays pending for the next tick, up to
    ``expire_after_ms`` after it became pending: then it is rejected, saying why it was not
    verified (``missing``: why each pair had no ticker this tick).

    ``listings`` are every configured exchange's, in EXCHANGES order. A pair is verified on the
    exchange that served its ticker this tick (its liquidity is judged there), with that exchange's
    listing read after the pair became pending (an older copy may predate a listing or a halt). It
    is rejected as unlisted only when every exchange's listing was read after that and none trades
    it: an exchange whose listing is unknown might still list it.

    At most ``room`` pairs are activated (WHITELIST_MAX_ACTIVE less the pairs served), the longest
    pending first; a pair verified past that is rejected, saying so.
    """
    verdicts = []
    for record in sorted(pending, key=pending_since):
        since = pending_since(record)
        verdict = _verdict(record, since, listings, tickers, min_quote_volume)
        if verdict is not None and verdict.to == ACTIVE:
            if room <= 0:
                reason = "not served: WHITELIST_MAX_ACTIVE pairs are served already (" + verdict.reason + ")"
                verdict = Transition(
                    record.pair, REJECTED, reason, (PENDING,), verdict.exchange, verdict.symbol, True
                )
            room -= 1
        if verdict is None and now - since > expire_after_ms:
            why = missing.get(record.pair) or "no exchange's listing could be read since it was submitted"
            reason = f"not verified within {expire_after_ms // 1000} s: {why}"
            verdict = Transition(record.pair, REJECTED, reason, (PENDING,), verified=True)
        if verdict is not None:
            verdicts.append(verdict)
    return verdicts


def _verdict(
    record: PairRecord,
    since: int,
    listings: Sequence[Listing],
    tickers: Mapping[str, Ticker],
    min_quote_volume: float,
) -> Transition | None:
    if any(view.trading(record.pair) for view in listings):
        ticker = tickers.get(record.pair)
        view = next((view for view in listings if ticker and view.exchange == ticker.exchange), None)
        if ticker is None or view is None or not view.known_since(since):
            return None  # not fetched this tick (transient error), or on a listing too old: later
        if ticker.quoteVolume < min_quote_volume:
            volume, minimum = f"{ticker.quoteVolume:g}", f"{min_quote_volume:g}"
            reason = f"illiquid: 24 h quote volume {volume} on {view.exchange} is below the minimum {minimum}"
            return Transition(record.pair, REJECTED, reason, (PENDING,), view.exchange, ticker.symbol, True)
        reason = f"verified: {view.exchange} lists {ticker.symbol} and it is trading"
        return Transition(record.pair, ACTIVE, reason, (PENDING,), view.exchange, ticker.symbol, True)
    if not all(view.known_since(since) for view in listings):
        return None
    listed = next((view for view in listings if view.entry(record.pair)), None)
    symbol = listed.entry(record.pair).symbol if listed else None  # type: ignore[union-attr]
    reason = _nowhere(
        record.pair, listings, not_trading="lists {symbol} but it is not trading (status {status})"
    )
    return Transition(
        record.pair, REJECTED, reason, (PENDING,), listed.exchange if listed else None, symbol, True
    )


def pending_since(record: PairRecord) -> int:
    """When the pair last became pending (submitted, or approved again)."""
    change = record.lastStatusChange
    return change.at if change is not None and change.to == PENDING else record.submittedAt


def recheck_listed(records: Iterable[PairRecord], listings: Sequence[Listing]) -> list[Transition]:
    """Active pairs that no configured exchange trades any more become suspended; suspended ones
    that one trades again become active. Call on a tick that read a listing: a suspension needs
    every exchange's listing known (and not an old copy kept while its refresh fails)."""
    every_listing_known = all(view.by_pair is not None and view.conclusive for view in listings)
    changes = []
    for record in records:
        serving = next((view for view in listings if view.trading(record.pair)), None)
        if record.status == ACTIVE and serving is None and every_listing_known:
            reason = _nowhere(record.pair, listings, not_trading="reports {symbol} as {status}: not trading")
            changes.append(Transition(record.pair, SUSPENDED, reason, (ACTIVE,), verified=True))
        elif record.status == SUSPENDED and serving is not None:
            symbol = serving.entry(record.pair).symbol  # type: ignore[union-attr]  # trading: listed
            reason = f"{serving.exchange} trades {symbol} again"
            changes.append(
                Transition(record.pair, ACTIVE, reason, (SUSPENDED,), serving.exchange, symbol, True)
            )
    return changes


def _nowhere(pair: str, listings: Sequence[Listing], *, not_trading: str) -> str:
    """Why no configured exchange can serve ``pair``, exchange by exchange."""
    reasons = []
    for view in listings:
        listing = view.entry(pair)
        if view.refused:
            reasons.append(f"{view.exchange} refuses requests from this location")
        elif listing is None:
            reasons.append(f"{view.exchange} does not list {pair}")
        else:
            detail = not_trading.format(symbol=listing.symbol, status=listing.status)
            reasons.append(f"{view.exchange} {detail}")
    return "; ".join(reasons)
