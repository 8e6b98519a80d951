"""The data the service stores and serves, as pydantic models."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from market_data.statuses import PairStatus

# A ticker time further in the future than this is a broken clock upstream, not a price: a few
# seconds, or a price would look fresh that long after the fetcher stopped.
MAX_CLOCK_SKEW_MS = 5_000
# What DynamoDB can store of a number (its magnitude, 0 aside): one beyond fails the whole batch
# of last-known-good writes it is in, so it is refused here, for its pair alone.
STORABLE_MAGNITUDE = (1e-130, 9.9999999999999999999999999999999999999e125)
NUMBER_FIELDS = ("price", "volume", "quoteVolume", "change24h", "high24h", "low24h")
# The oldest ticker time accepted: a 24 h ticker whose close is older than this is not "current".
MAX_TICKER_AGE_MS = 24 * 3_600_000


class Ticker(BaseModel):
    """One pair's 24 h ticker as the fetcher validated it; stored in the cache and in DynamoDB.

    Field names are the HTTP contract's (camelCase) so the read path can serve what it reads.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    pair: str
    price: float = Field(gt=0)
    volume: float = Field(ge=0)
    quoteVolume: float = Field(ge=0)
    timestamp: int = Field(gt=0, description="The exchange's own time for this ticker, ms since epoch")
    fetchedAt: int = Field(gt=0, description="When the fetcher received it, ms since epoch")
    change24h: float = Field(description="Rolling 24 h change of the last price, percent")
    high24h: float = Field(gt=0)
    low24h: float = Field(gt=0)
    exchange: str
    symbol: str

    @model_validator(mode="after")
    def _check_consistency(self) -> Ticker:
        """Checks across fields. A refusal's type names the field at fault (operators count by it);
        ``high24h`` below ``low24h`` is the whole ticker's."""
        smallest, largest = STORABLE_MAGNITUDE
        for name in NUMBER_FIELDS:
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"{name} is not a finite number")
            if value != 0 and not smallest <= abs(value) <= largest:
                raise PydanticCustomError(
                    name, "{field} {value} is beyond what can be stored", {"field": name, "value": value}
                )
        if self.high24h < self.low24h:
            raise ValueError(f"high24h {self.high24h} is below low24h {self.low24h}")
        if not self.low24h <= self.price <= self.high24h:
            raise PydanticCustomError(
                "price",
                "price {price} is outside the day's own range [{low}, {high}]",
                {"price": self.price, "low": self.low24h, "high": self.high24h},
            )
        if self.timestamp > self.fetchedAt + MAX_CLOCK_SKEW_MS:
            raise PydanticCustomError(
                "timestamp",
                "timestamp {timestamp} is in the future (fetched at {fetched})",
                {"timestamp": self.timestamp, "fetched": self.fetchedAt},
            )
        if self.timestamp < self.fetchedAt - MAX_TICKER_AGE_MS:
            raise PydanticCustomError(
                "timestamp", "timestamp {timestamp} is more than 24 h old", {"timestamp": self.timestamp}
            )
        return self


class PriceEntry(Ticker):
    """One pair in a prices response: the ticker plus how fresh it is and where it came from."""

    stale: bool = Field(description="True when now - timestamp exceeds MARKET_DATA_CACHE_STALE_TTL_MS")
    source: Literal["cache", "last_known_good"]
    sparkline: list[float | None] | None = Field(
        default=None,
        description="With include=sparkline: 96 closes of 15 minutes, the last 24 h ending with the "
        "current price; null where an interval had none",
    )


class StatusChange(BaseModel):
    """The last transition of a pair's status, and why."""

    model_config = ConfigDict(populate_by_name=True)

    from_status: PairStatus | None = Field(alias="from")
    to: PairStatus
    at: int
    reason: str | None = None
    by: str | None = Field(
        None, description="the administrator's IAM ARN, for a change an administrator made"
    )

    @model_serializer(mode="wrap")
    def _without_absent_by(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``by`` only where an administrator made the change: the other changes keep their shape."""
        dumped: dict[str, Any] = handler(self)
        if dumped.get("by") is None:
            dumped.pop("by", None)
        return dumped


class PairRecord(BaseModel):
    """A pair in the registry: seeded from TRADING_PAIRS or submitted to the whitelist."""

    model_config = ConfigDict(populate_by_name=True)

    pair: str
    status: PairStatus
    reason: str | None = Field(None, description="Why the pair has its status, in words a user understands")
    exchange: str | None = None
    symbol: str | None = None
    submittedAt: int
    verifiedAt: int | None = None
    lastStatusChange: StatusChange | None = None
    origin: Literal["seed", "submission"] = "submission"


class SubmitPairRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pair: str = Field(max_length=41, description="BASE/QUOTE, e.g. SOL/USDT")


class SubmissionAccepted(BaseModel):
    """The answer to a new submission: recorded as pending, to be verified by the fetcher."""

    pair: str
    status: PairStatus
    submittedAt: int


class ErrorBody(BaseModel):
    error: str
    message: str


# The prices function's words (prices_api.prices), typed here for the API description.
NotListedReason = Literal["not listed", "never submitted", "pending verification", "rejected", "revoked"]
NOT_LISTED_DESCRIPTION = (
    "pair -> why no price will come for it: 'not listed' (from the cache), or, when the cache is "
    "lost and the registry answers, 'never submitted', 'pending verification', 'rejected' or 'revoked'"
)


class UnavailableBody(ErrorBody):
    unavailablePairs: list[str] = Field(description="Every requested pair not served, in the order asked")
    notListed: dict[str, NotListedReason] = Field(
        default_factory=dict,
        description=f"Present when some of them are not listed: {NOT_LISTED_DESCRIPTION}",
    )


class NotListedBody(ErrorBody):
    notListed: dict[str, NotListedReason] = Field(description=NOT_LISTED_DESCRIPTION)


class FetcherStats(BaseModel):
    """Counters and last results the fetcher keeps, as source design 002's health endpoint shows them."""

    lastFetchTime: int | None = None
    lastFetchDurationMs: int | None = None
    fetchAttempts: int = 0
    fetchSuccesses: int = 0
    fetchErrors: int = 0
    lastError: str | None = None


class FetcherHealth(BaseModel):
    isRunning: bool
    cacheAge: int | None = Field(description="ms since the last successful fetch")
    isCacheStale: bool
    fetchSuccessRate: float | None
    lastErrorMessage: str | None


class PairSource(BaseModel):
    """Where a pair's price comes from now."""

    exchange: str
    symbol: str = Field(description="the exchange's own name for the pair, from its listing")
    preferred: bool = Field(
        description="false while the pair is served by a later exchange in EXCHANGES (failover)"
    )


class ExchangeStatus(BaseModel):
    """One configured exchange as the fetcher last saw it."""

    circuitState: Literal["closed", "open", "half_open"] = "closed"
    pausedUntil: int | None = None
    pauseReason: str | None = None
    usedWeight: int | None = Field(None, description="request weight used this minute (Binance protocol)")
    pairs: list[str] = Field(default_factory=list, description="pairs it served on the last tick")
    requests: int = Field(0, description="requests made to it on the last tick")
    fetchMs: int | None = Field(None, description="its part of the last tick's exchange phase")
    errors: int = Field(0, description="failed requests on the last tick")
    lastError: str | None = None


class FetcherStatus(BaseModel):
    isRunning: bool
    stats: FetcherStats
    health: FetcherHealth
    lastHeartbeat: int | None = None
    pausedUntil: int | None = None
    pauseReason: str | None = None
    circuitState: Literal["closed", "open", "half_open"] = Field(
        "closed", description="the worst of the exchanges' circuits"
    )
    usedWeight: int | None = Field(None, description="the highest weight an exchange reported this minute")
    listedPairs: list[str] = []
    missingPairs: dict[str, str] = Field(default_factory=dict, description="pair -> why it is not served")
    invalidTickers: int = 0
    priceJumpsHeld: int = Field(0, description="prices held back as jumps since start (never served)")
    errorsByKind: dict[str, int] = Field(
        default_factory=dict, description="exchange errors since start, by kind"
    )
    invalidByKind: dict[str, int] = Field(
        default_factory=dict, description="dropped tickers, by the field at fault"
    )
    advice: str | None = Field(None, description="What an operator can do about the current exchange error")
    listingWatch: str | None = Field(
        None, description="why listings are read every LISTING_WATCH_MS (pairs suspended, names refused)"
    )
    pairsByStatus: dict[str, int] = Field(
        default_factory=dict, description="registry pairs by status (active, pending, suspended, ...)"
    )
    pairSources: dict[str, PairSource] = Field(
        default_factory=dict, description="active pair -> the exchange asked for it on the last tick"
    )
    exchanges: dict[str, ExchangeStatus] = Field(
        default_factory=dict, description="each configured exchange, in EXCHANGES order"
    )


class LatencySummary(BaseModel):
    p50: float | None = None
    p99: float | None = None
    samples: int = 0


class GapSummary(BaseModel):
    p50: int | None = None
    max: int | None = None


class DataHealth(BaseModel):
    """How fast data moves: exchange to cache (sync) and cache to client (read)."""

    syncLatencyMs: int | None = Field(
        None, description="the last tick's exchange phase, first request to last answer"
    )
    syncGapMs: GapSummary = Field(
        default_factory=GapSummary,
        description="the last tick, over its pairs: exchange ticker time to visible in the cache",
    )
    cacheWriteMs: int | None = Field(None, description="the last tick's cache write")
    readLatencyMs: LatencySummary = Field(
        default_factory=LatencySummary,
        description="prices requests over readWindowSeconds, all containers: event in to response out",
    )
    readWindowSeconds: int = 0


class PairsServed(BaseModel):
    fresh: int = 0
    stale: int = 0
    lastKnownGood: int = 0
    missing: int = 0


class CacheHealth(BaseModel):
    """What prices requests got over the same window as the read latency."""

    hitRate: float | None = Field(None, description="fresh / all requested pairs; null without requests")
    pairsServed: PairsServed = Field(default_factory=PairsServed)
    requests: int = 0


class HealthBody(BaseModel):
    status: Literal["ok", "degraded", "down"]
    reason: str | None = None
    fetcher: FetcherStatus
    dataHealth: DataHealth = Field(default_factory=DataHealth)
    cacheHealth: CacheHealth = Field(default_factory=CacheHealth)
