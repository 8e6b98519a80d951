"""What the fetcher leaves for other invocations and for health, as types both sides share.

The fetcher encodes these and the readers (the next invocation, the prices function's health)
decode them, so no field name is shared across modules by convention. The encodings are the
stores' wire format: changing one is a change of contract between deployed versions.

Longer than most modules on purpose: every type that crosses from the fetcher to its readers is
here, so that a newcomer finds the whole contract in one file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

CircuitName = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class Ban:
    """No request to an exchange before ``until`` (epoch ms).

    ``status`` is the exchange's (418 banned, 429 rate limited) or 0 for a pause of our own (the
    weight budget), whose ``reason`` then says why.
    """

    until: int
    status: int
    reason: str

    def lasts(self, now: int) -> bool:
        return self.until > now

    def describe(self) -> str:
        if self.status == 418:
            return "IP banned (HTTP 418); no request until Retry-After has passed"
        if self.status == 429:
            return "rate limited (HTTP 429); no request until Retry-After has passed"
        return self.reason

    def as_json(self) -> bytes:
        return orjson.dumps({"until": self.until, "status": self.status, "reason": self.reason})

    @classmethod
    def from_json(cls, raw: bytes | str) -> Ban:
        return cls.from_mapping(orjson.loads(raw))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Ban:
        return cls(
            until=int(values["until"]),
            status=int(values.get("status") or 0),
            reason=str(values.get("reason")),
        )


def longest(*bans: Ban | None) -> Ban | None:
    """The ban that ends last: a ban only ever grows, whichever copy of it was read."""
    return max((ban for ban in bans if ban is not None), key=lambda ban: ban.until, default=None)


@dataclass(frozen=True)
class CircuitState:
    """An exchange's circuit breaker as every invocation shares it (``fetcher.circuit`` moves it)."""

    state: Literal["closed", "open"] = "closed"
    failures: int = 0  # consecutive failed ticks
    opens: int = 0  # consecutive openings: the backoff exponent
    retry_at: int = 0  # ms: an open circuit lets one probe through from then on
    opened_at: int = 0  # ms: when it opened (failed probes keep it); 0 when closed or not known

    def allows(self, now: int) -> bool:
        """Closed: yes. Open: only once the backoff has passed (that tick is the probe)."""
        return self.state != "open" or now >= self.retry_at

    def display(self, now: int) -> CircuitName:
        """What operators see: an open circuit whose backoff has passed is half-open."""
        if self.state != "open":
            return "closed"
        return "half_open" if now >= self.retry_at else "open"

    def as_fields(self) -> dict[str, str]:
        return {
            "state": self.state,
            "failures": str(self.failures),
            "opens": str(self.opens),
            "retryAt": str(self.retry_at),
            "openedAt": str(self.opened_at),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> CircuitState:
        if not fields:
            return cls()
        return cls(
            state="open" if fields.get("state") == "open" else "closed",
            failures=int(fields.get("failures", 0)),
            opens=int(fields.get("opens", 0)),
            retry_at=int(fields.get("retryAt", 0)),
            opened_at=int(fields.get("openedAt", 0)),
        )


@dataclass(frozen=True)
class Heartbeat:
    """Written every slot by every running invocation, paused or not: health tells running from
    dead by its age, and a pause from an outage by ``paused_until``."""

    at: int
    invocation_id: str  # which invocation wrote it: what an operator reading the key asks first
    slot: int
    paused_until: int | None = None
    pause_reason: str | None = None

    def paused(self, until: int, reason: str) -> Heartbeat:
        return Heartbeat(self.at, self.invocation_id, self.slot, until, reason)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"at": self.at, "invocationId": self.invocation_id, "slot": self.slot}
        if self.paused_until is not None:
            body.update(pausedUntil=self.paused_until, pauseReason=self.pause_reason)
        return body

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Heartbeat:
        return cls(
            at=_int(values.get("at")) or 0,
            invocation_id=str(values.get("invocationId", "")),
            slot=_int(values.get("slot")) or 0,
            paused_until=_int(values.get("pausedUntil")),
            pause_reason=values.get("pauseReason"),
        )


@dataclass(frozen=True)
class ExchangeFigures:
    """One exchange's part of the last tick."""

    pairs: list[str] = field(default_factory=list)  # the pairs it served
    requests: int = 0
    fetch_ms: int | None = None
    used_weight: int | None = None  # as it last reported (Binance protocol)
    errors: int = 0
    last_error: str | None = None  # kept until its next error

    def as_json(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "requests": self.requests,
            "fetchMs": self.fetch_ms,
            "usedWeight": self.used_weight,
            "errors": self.errors,
        }

    @classmethod
    def from_json(cls, values: Mapping[str, Any], last_error: str | None) -> ExchangeFigures:
        return cls(
            pairs=list(values.get("pairs", [])),
            requests=_int(values.get("requests")) or 0,
            fetch_ms=_int(values.get("fetchMs")),
            used_weight=_int(values.get("usedWeight")),
            errors=_int(values.get("errors")) or 0,
            last_error=last_error,
        )


@dataclass(frozen=True)
class TickStats:
    """What one tick adds to the fetcher's stats hash: counters added, last results replaced.

    A value left as None keeps what an earlier tick wrote (the last fetch time stays that of the
    last tick that fetched something).
    """

    attempts: int = 1
    successes: int = 0
    errors: int = 0
    invalid_tickers: int = 0
    price_jumps_held: int = 0
    errors_by_kind: Mapping[str, int] = field(default_factory=dict)  # exchange errors, and "dynamodb"
    invalid_by_kind: Mapping[str, int] = field(default_factory=dict)  # dropped tickers, by field
    duration_ms: int = 0
    missing: Mapping[str, str] = field(default_factory=dict)  # pair -> why it is not served
    pairs_by_status: Mapping[str, int] = field(default_factory=dict)
    pair_sources: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # PairSource's fields
    exchanges: Mapping[str, ExchangeFigures] = field(default_factory=dict)
    advice: str = ""  # what an operator can do; empty once the cause has gone
    listing_watch: str = ""  # why listings are read every minute; empty once nothing is watched
    last_fetch_time: int | None = None
    sync_latency_ms: int | None = None
    used_weight: int | None = None
    last_error: str | None = None

    def counters(self) -> dict[str, int]:
        """The HINCRBY increments."""
        counts = {
            "fetchAttempts": self.attempts,
            "fetchSuccesses": self.successes,
            "fetchErrors": self.errors,
            "invalidTickers": self.invalid_tickers,
            "priceJumpsHeld": self.price_jumps_held,
        }
        counts.update({f"errors:{kind}": n for kind, n in self.errors_by_kind.items()})
        counts.update({f"invalid:{kind}": n for kind, n in self.invalid_by_kind.items()})
        return {name: n for name, n in counts.items() if n}

    def fields(self) -> dict[str, str]:
        """The HSET fields."""
        fields = {
            "lastFetchDurationMs": str(self.duration_ms),
            "missingPairs": orjson.dumps(dict(self.missing)).decode(),
            "pairsByStatus": orjson.dumps(dict(self.pairs_by_status)).decode(),
            "pairSources": orjson.dumps({pair: dict(v) for pair, v in self.pair_sources.items()}).decode(),
            "exchanges": orjson.dumps({name: f.as_json() for name, f in self.exchanges.items()}).decode(),
            "exchangeAdvice": self.advice,
            "listingWatch": self.listing_watch,
        }
        optional = {
            "lastFetchTime": self.last_fetch_time,
            "syncLatencyMs": self.sync_latency_ms,
            "usedWeight": self.used_weight,
            "lastError": self.last_error,
        }
        fields.update({name: str(value) for name, value in optional.items() if value is not None})
        for name, figures in self.exchanges.items():
            if figures.last_error is not None:
                fields[f"lastError:{name}"] = figures.last_error
        return fields


@dataclass(frozen=True)
class WriteTimings:
    """What a tick's cache write took, and how far behind the exchange it made prices visible."""

    cache_write_ms: int
    sync_gap_p50_ms: int | None = None
    sync_gap_max_ms: int | None = None

    @classmethod
    def measured(cls, cache_write_ms: int, sync_gaps_ms: list[int]) -> WriteTimings:
        if not sync_gaps_ms:
            return cls(cache_write_ms)
        ordered = sorted(sync_gaps_ms)
        return cls(cache_write_ms, ordered[(len(ordered) - 1) // 2], ordered[-1])

    def fields(self) -> dict[str, str]:
        fields = {"lastCacheWriteMs": str(self.cache_write_ms)}
        if self.sync_gap_p50_ms is not None and self.sync_gap_max_ms is not None:
            fields["syncGapP50Ms"] = str(self.sync_gap_p50_ms)
            fields["syncGapMaxMs"] = str(self.sync_gap_max_ms)
        return fields

    GAP_FIELDS = ("syncGapP50Ms", "syncGapMaxMs")  # removed when a tick wrote nothing


@dataclass(frozen=True)
class FetcherStats:
    """The fetcher's stats hash as health reads it: running totals and the last tick's results."""

    attempts: int = 0
    successes: int = 0
    errors: int = 0
    invalid_tickers: int = 0
    price_jumps_held: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    invalid_by_kind: dict[str, int] = field(default_factory=dict)
    duration_ms: int | None = None
    missing: dict[str, str] = field(default_factory=dict)
    pairs_by_status: dict[str, int] = field(default_factory=dict)
    pair_sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    exchanges: dict[str, ExchangeFigures] = field(default_factory=dict)
    advice: str | None = None
    listing_watch: str | None = None
    last_fetch_time: int | None = None
    sync_latency_ms: int | None = None
    used_weight: int | None = None
    last_error: str | None = None
    timings: WriteTimings | None = None

    @classmethod
    def decode(cls, raw: Mapping[str, str]) -> FetcherStats:
        figures = _json(raw.get("exchanges")) or {}
        write_ms = _int(raw.get("lastCacheWriteMs"))
        return cls(
            attempts=_int(raw.get("fetchAttempts")) or 0,
            successes=_int(raw.get("fetchSuccesses")) or 0,
            errors=_int(raw.get("fetchErrors")) or 0,
            invalid_tickers=_int(raw.get("invalidTickers")) or 0,
            price_jumps_held=_int(raw.get("priceJumpsHeld")) or 0,
            errors_by_kind=_by_prefix(raw, "errors:"),
            invalid_by_kind=_by_prefix(raw, "invalid:"),
            duration_ms=_int(raw.get("lastFetchDurationMs")),
            missing=_json(raw.get("missingPairs")) or {},
            pairs_by_status=_json(raw.get("pairsByStatus")) or {},
            pair_sources=_json(raw.get("pairSources")) or {},
            exchanges={
                name: ExchangeFigures.from_json(values, raw.get(f"lastError:{name}"))
                for name, values in figures.items()
            },
            advice=raw.get("exchangeAdvice") or None,
            listing_watch=raw.get("listingWatch") or None,
            last_fetch_time=_int(raw.get("lastFetchTime")),
            sync_latency_ms=_int(raw.get("syncLatencyMs")),
            used_weight=_int(raw.get("usedWeight")),
            last_error=raw.get("lastError"),
            timings=None
            if write_ms is None
            else WriteTimings(write_ms, _int(raw.get("syncGapP50Ms")), _int(raw.get("syncGapMaxMs"))),
        )

    def figures(self, exchange: str) -> ExchangeFigures:
        return self.exchanges.get(exchange) or ExchangeFigures()


def _by_prefix(stats: Mapping[str, str], prefix: str) -> dict[str, int]:
    return {name[len(prefix) :]: _int(value) or 0 for name, value in stats.items() if name.startswith(prefix)}


def _json(raw: str | None) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _int(value: object) -> int | None:
    if value is None:
        return None
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


# The prices function's figures, summed per window in every container (``RequestMetrics``) and
# shared through the cache for health. The names are the metrics' (``observability.UNITS``).
SERVED_FRESH = "PairsServedFresh"
SERVED_STALE = "PairsServedStale"
SERVED_LAST_KNOWN_GOOD = "PairsServedLastKnownGood"
SERVED_MISSING = "PairsServedMissing"
RESPONSES_2XX, RESPONSES_4XX, RESPONSES_5XX = "Responses2xx", "Responses4xx", "Responses5xx"
RESPONSES_UNAVAILABLE = "ResponsesUnavailable"  # the designed 503s, counted apart from 5xx


@dataclass(frozen=True)
class ReadCounts:
    """Pairs served by where they came from, and responses, over one or more windows."""

    fresh: int = 0
    stale: int = 0
    last_known_good: int = 0
    missing: int = 0
    responses: int = 0

    def served(self) -> dict[str, int]:
        """The served pairs as the metrics count them."""
        return {
            SERVED_FRESH: self.fresh,
            SERVED_STALE: self.stale,
            SERVED_LAST_KNOWN_GOOD: self.last_known_good,
            SERVED_MISSING: self.missing,
        }

    @classmethod
    def decode(cls, counts: Mapping[str, int]) -> ReadCounts:
        responses = (RESPONSES_2XX, RESPONSES_4XX, RESPONSES_5XX, RESPONSES_UNAVAILABLE)
        return cls(
            fresh=counts.get(SERVED_FRESH, 0),
            stale=counts.get(SERVED_STALE, 0),
            last_known_good=counts.get(SERVED_LAST_KNOWN_GOOD, 0),
            missing=counts.get(SERVED_MISSING, 0),
            responses=sum(counts.get(name, 0) for name in responses),
        )
