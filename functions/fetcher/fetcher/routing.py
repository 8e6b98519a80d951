"""Phase: route (pure). Which exchange serves each pair: the first one, in the configured order,
whose own listing trades it.

Each pair is resolved against each exchange's listing, never by guessing names. An exchange that
cannot be asked this tick (circuit open, a ban, its listing unreadable) is skipped, and so is an
exchange on which the pair has just failed (missing from an answer, an error for its batch): the
next exchange that lists the pair serves it from the next tick. The hold on the failed source
doubles while probes fail and ends at a cap; when it ends, the pair is routed to its first source
again, which is the probe: an answer with the pair clears the hold and the pair stays there. A
hold only ever sends a pair elsewhere: when no other exchange can serve it, its held source is
asked again rather than leaving it unserved.

A pair is listed nowhere only when every configured exchange's listing was read and none has it:
an exchange whose listing is unknown this tick might still list it, so nothing is concluded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from fetcher.exchanges.base import Limits, ListingEntry
from market_data.contracts import Ban

# A failed pair is first held off its source for this long, then twice as long per failed probe.
FIRST_HOLD_MS = 30_000
MAX_HOLD_MS = 600_000


@dataclass(frozen=True)
class Route:
    pair: str
    exchange: str
    symbol: str  # the exchange's own name for the pair, from its listing
    preferred: bool  # the first exchange in EXCHANGES order that lists the pair


@dataclass(frozen=True)
class Routing:
    routes: dict[str, Route]  # pair -> where it is fetched this tick
    unserved: dict[str, str]  # pair -> why no exchange can serve it this tick


@dataclass
class Hold:
    until_ms: int
    failures: int


@dataclass
class FailureHolds:
    """Pairs held off an exchange after failing there; kept by the fetcher between ticks."""

    holds: dict[tuple[str, str], Hold] = field(default_factory=dict)  # (exchange, pair) -> hold

    def is_held(self, exchange: str, pair: str, now_ms: int) -> bool:
        hold = self.holds.get((exchange, pair))
        return hold is not None and now_ms < hold.until_ms

    def failed(self, exchange: str, pair: str, now_ms: int) -> None:
        previous = self.holds.get((exchange, pair))
        failures = previous.failures + 1 if previous is not None else 1
        hold_ms = min(FIRST_HOLD_MS * 2 ** (failures - 1), MAX_HOLD_MS)
        self.holds[(exchange, pair)] = Hold(now_ms + hold_ms, failures)

    def served(self, exchange: str, pair: str) -> None:
        self.holds.pop((exchange, pair), None)

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> FailureHolds:
        """The holds as the cache keeps them for every invocation: ``exchange|pair`` -> ``until,failures``."""
        holds = {}
        for key, value in fields.items():
            exchange, _, pair = key.partition("|")
            until, _, failures = value.partition(",")
            if pair and until.isdigit() and failures.isdigit():
                holds[(exchange, pair)] = Hold(int(until), int(failures))
        return cls(holds)

    def as_fields(self, now_ms: int) -> dict[str, str]:
        """The holds to keep; one long over is dropped (its failures count no more)."""
        return {
            f"{exchange}|{pair}": f"{hold.until_ms},{hold.failures}"
            for (exchange, pair), hold in self.holds.items()
            if now_ms - hold.until_ms < 2 * MAX_HOLD_MS
        }

    def record(
        self, routes: Iterable[Route], *, served: Iterable[str], failed: Iterable[str], now_ms: int
    ) -> None:
        """After a tick: a routed pair that came back is recovered there; one that failed there (an
        error for its request, absent from the answer) is held. A pair merely not fetched this slot
        (the exchange's rate or the slot's time spent) is neither: it did not fail."""
        answered, failures = set(served), set(failed)
        for route in routes:
            if route.pair in answered:
                self.served(route.exchange, route.pair)
            elif route.pair in failures:
                self.failed(route.exchange, route.pair, now_ms)


def route_pairs(
    pairs: Sequence[str],
    order: Sequence[str],
    listings: Mapping[str, Mapping[str, ListingEntry] | None],
    *,
    unavailable: Mapping[str, str],
    holds: FailureHolds,
    now_ms: int,
) -> Routing:
    """Route ``pairs`` over the exchanges in ``order``.

    ``listings`` holds each exchange's servable pairs (None: unknown this tick); ``unavailable``
    names the exchanges that must not be asked this tick and why.
    """
    routes: dict[str, Route] = {}
    unserved: dict[str, str] = {}
    every_listing_known = all(listings.get(exchange) is not None for exchange in order)
    for pair in pairs:
        listed_on = [exchange for exchange in order if pair in (listings.get(exchange) or {})]
        if not listed_on:
            if every_listing_known:
                unserved[pair] = "no configured exchange lists it"
            else:
                unserved[pair] = "not listed on any exchange whose listing could be read this tick"
            continue
        reasons = []
        askable = [exchange for exchange in listed_on if exchange not in unavailable]
        reasons = [
            f"{exchange}: {unavailable[exchange]}" for exchange in listed_on if exchange in unavailable
        ]
        # A hold sends the pair elsewhere; where there is nowhere else, its source is asked again.
        source = next((e for e in askable if not holds.is_held(e, pair, now_ms)), None) or next(
            iter(askable), None
        )
        if source is None:
            unserved[pair] = "; ".join(reasons)
        else:
            symbol = (listings[source] or {})[pair].symbol
            routes[pair] = Route(pair, source, symbol, preferred=source == listed_on[0])
    return Routing(routes, unserved)


@dataclass(frozen=True)
class RoutePlan:
    routes: dict[str, Route]  # pair -> the exchange asked for it this tick
    unserved: dict[str, str]  # pair -> why no exchange can serve it this tick
    weight_pauses: dict[str, Ban]  # exchanges that pause themselves: their share would pass their budget


def plan_routes(
    pairs: Sequence[str],
    order: Sequence[str],
    listings: Mapping[str, Mapping[str, ListingEntry] | None],
    limits: Mapping[str, Limits],
    *,
    unavailable: Mapping[str, str],
    holds: FailureHolds,
    now_ms: int,
    budget_now_ms: int | None = None,
) -> RoutePlan:
    """Route ``pairs`` within each exchange's limits.

    An exchange whose share would pass its weight budget pauses itself until its window ends, and
    its pairs go to the next exchange that lists them. Pairs beyond what an exchange can fetch in
    one slot (a request per pair) go to the next exchange that lists them too, where there is one:
    pairs on their first exchange stay, those failed over to it move on first. ``budget_now_ms``
    (the time the budgets are read at, after this tick's listing reads) defaults to ``now_ms``.
    """
    checked_at = now_ms if budget_now_ms is None else budget_now_ms
    unavailable = dict(unavailable)
    pauses: dict[str, Ban] = {}
    while True:
        routing = route_pairs(pairs, order, listings, unavailable=unavailable, holds=holds, now_ms=now_ms)
        paused_now = False
        for name, share in routes_by_exchange(routing.routes.values()).items():
            budget = limits[name].weight
            reason = budget.refusal(len(share), checked_at) if budget is not None else None
            if reason is not None and budget is not None:
                pauses[name] = Ban(until=budget.window_end(now_ms), status=0, reason=reason)
                unavailable[name] = reason
                paused_now = True
        if not paused_now:
            break
    routes = dict(routing.routes)
    for name, share in routes_by_exchange(routing.routes.values()).items():
        capacity = limits[name].pairs_per_slot
        if capacity is None or len(share) <= capacity:
            continue
        keep = sorted(share, key=lambda pair: not routes[pair].preferred)[:capacity]
        overflow = [pair for pair in share if pair not in keep]
        full = {**unavailable, name: "its request rate is spent this slot"}
        moved = route_pairs(overflow, order, listings, unavailable=full, holds=holds, now_ms=now_ms)
        for pair, route in moved.routes.items():
            # Only to an exchange where the pair has not just failed, and within that one's budget;
            # the others stay, served as this exchange's rate allows.
            if holds.is_held(route.exchange, pair, now_ms):
                continue
            share_there = routes_by_exchange([*routes.values(), route]).get(route.exchange, {})
            budget = limits[route.exchange].weight
            if budget is None or budget.refusal(len(share_there), checked_at) is None:
                routes[pair] = route
    return RoutePlan(routes, routing.unserved, pauses)


def routes_by_exchange(routes: Iterable[Route]) -> dict[str, dict[str, str]]:
    """exchange -> {pair: the exchange's own name for it}."""
    grouped: dict[str, dict[str, str]] = {}
    for route in routes:
        grouped.setdefault(route.exchange, {})[route.pair] = route.symbol
    return grouped
