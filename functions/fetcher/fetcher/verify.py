"""Whitelist verification and re-checks: decisions from the exchange's own listing, nothing else.

Pure functions over what the tick already has (exchangeInfo and the tickers it fetched), so user
submissions never cost an extra exchange call per pair, and a timeout, a 5xx or a ban can never
change a status: only a listing the exchange actually returned can.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fetcher.exchange import ExchangeInfo
from market_data.models import PairRecord, Ticker


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
    info: ExchangeInfo,
    tickers: Mapping[str, Ticker],
    *,
    listing_fetched_at: int,
    min_quote_volume: float,
    exchange: str,
) -> list[Transition]:
    """Verdicts for pending pairs; a pair without a verdict stays pending for the next tick.

    A verdict needs a listing read after the pair became pending (an older copy may predate a
    listing or a halt), and "active" needs the pair's ticker from this tick to judge liquidity.
    """
    verdicts = []
    for record in pending:
        if listing_fetched_at < pending_since(record):
            continue
        listing = info.by_pair.get(record.pair)
        if listing is None:
            reason = f"{exchange} does not list {record.pair}"
            verdicts.append(Transition(record.pair, "rejected", reason, ("pending",), verified=True))
            continue
        if listing.status != "TRADING":
            reason = f"{exchange} lists {listing.symbol} but it is not trading (status {listing.status})"
            verdicts.append(
                Transition(record.pair, "rejected", reason, ("pending",), exchange, listing.symbol, True)
            )
            continue
        ticker = tickers.get(record.pair)
        if ticker is None:
            continue  # not fetched this tick (transient error): decide on a later tick
        if ticker.quoteVolume < min_quote_volume:
            volume, minimum = f"{ticker.quoteVolume:g}", f"{min_quote_volume:g}"
            reason = f"illiquid: 24 h quote volume {volume} is below the minimum {minimum}"
            verdicts.append(
                Transition(record.pair, "rejected", reason, ("pending",), exchange, listing.symbol, True)
            )
            continue
        reason = f"verified: {exchange} lists {listing.symbol} and it is trading"
        verdicts.append(
            Transition(record.pair, "active", reason, ("pending",), exchange, listing.symbol, True)
        )
    return verdicts


def pending_since(record: PairRecord) -> int:
    """When the pair last became pending (submitted, or approved again)."""
    change = record.lastStatusChange
    return change.at if change is not None and change.to == "pending" else record.submittedAt


def recheck_listed(records: Iterable[PairRecord], info: ExchangeInfo, *, exchange: str) -> list[Transition]:
    """Active pairs that stopped trading or disappeared become suspended; suspended ones that
    trade again become active. Call only with a listing fetched just now."""
    changes = []
    for record in records:
        listing = info.by_pair.get(record.pair)
        trading = listing is not None and listing.status == "TRADING"
        if record.status == "active" and not trading:
            reason = (
                f"{exchange} does not list {record.pair}"
                if listing is None
                else f"{exchange} reports {listing.symbol} as {listing.status}: not trading"
            )
            changes.append(Transition(record.pair, "suspended", reason, ("active",), verified=True))
        elif record.status == "suspended" and trading and listing is not None:
            reason = f"{exchange} trades {listing.symbol} again"
            changes.append(
                Transition(record.pair, "active", reason, ("suspended",), exchange, listing.symbol, True)
            )
    return changes
