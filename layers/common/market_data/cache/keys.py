"""Every cache key, who writes it, who reads it and how long it lives.

Every key carries the hash tag ``{md}``, so all of them live in one cluster slot: the same
pipelines run on ElastiCache Serverless (cluster mode, TLS) and on a single local node, and a
read is one round trip whatever the number of pairs. ``docs/cache-keys.md`` lists them for
operators.
"""

from __future__ import annotations

TAG = "{md}"

# HASH pair -> newest ticker JSON, plus the listed and suspended pairs (the fields below).
# Writer: the fetcher's tick (every slot). Readers: prices (every request), health (listed pairs),
# the fetcher (jump guard, and which copies to drop). Lives 7 days from the last tick.
STALE_COPIES = f"{TAG}:last"
# Fields of STALE_COPIES, so one HMGET answers a prices request: the listed and the suspended pairs
# as JSON lists, and the slot of the tick that wrote last (until when an answer may be kept). A
# field without "/" can never be a pair's.
LISTED_FIELD = "_listed"
SUSPENDED_FIELD = "_suspended"
SLOT_FIELD = "_slot"
META_FIELDS = frozenset({LISTED_FIELD, SUSPENDED_FIELD, SLOT_FIELD})
# The stale copy outlives any outage worth serving through; after a week a price is history.
STALE_COPY_TTL_MS = 7 * 24 * 3_600_000

# HASH pair -> "<timestamp>|<price>|<stale>|<source>" of the entry last pushed to WebSocket
# subscribers. Writer and reader: the broadcaster, once per slot, in one server-side step, so an
# update carries only the pairs whose entry changed. Lives a day from the last push; lost, every
# pair counts as changed once.
STREAM_SENT = f"{TAG}:stream:sent"
STREAM_SENT_TTL_MS = 24 * 3_600_000
# The newest minute whose closed candles were pushed to candle subscribers. Writer and reader: the
# broadcaster, advanced in one server-side step so that each minute's candles go out once. Lives a
# day from the last push.
STREAM_CANDLE_MINUTE = f"{TAG}:stream:candle-minute"

# HASH pair -> "time|open|high|low|close|samples|first slot|last slot|first at|last at": each pair's
# 1-minute candle of the minute now open, as the ticks' served prices build it. Writer: the fetcher's
# candle consumer, every tick, in one server-side step that also closes the previous minute's into
# MINUTE_CANDLES. Readers: history and the hourly roll-up. Lives a day from the last tick.
OPEN_CANDLES = f"{TAG}:candles:open"
# HASH pair -> "first|close,close,...": each pair's 15-minute closes of the last 24 h (an empty
# entry for an interval without one), the sparklines. Writer: the same step, as each minute closes.
# Reader: prices with include=sparkline. Lives a day from the last write.
SPARKLINES = f"{TAG}:sparklines"
CANDLES_TTL_MS = 25 * 3_600_000  # a day of 1-minute candles, and an hour to roll the last one up


def minute_candles_key(pair: str) -> str:
    """ZSET of ``pair``'s closed 1-minute candles (member: the API's JSON, score: its time), the
    last 24 h. Writer: the candle step (as a minute closes; older ones trimmed) and backfill.
    Readers: history, the hourly roll-up, the WebSocket candle push. Lives a day from the last write."""
    return f"{TAG}:candles:1m:{pair}"


# HASH pair -> ms: pairs whose history was backfilled from their exchange (once; a flushed cache
# forgets, and the history it lost is backfilled again). Writer and reader: the fetcher's backfill.
BACKFILLED = f"{TAG}:backfilled"


def backfill_claim_key(pair: str) -> str:
    """The invocation backfilling ``pair`` (``SET NX``), so two never ask the exchange for the same
    history. Released when the backfill fails; lives ten minutes."""
    return f"{TAG}:backfill:{pair}"


def backfill_pace_key(exchange: str) -> str:
    """Epoch ms before which no backfill request goes to ``exchange``, shared by every invocation
    (overlapping ones would otherwise each ask at the full backfill pace). Writer and reader: the
    fetcher's backfill, one server-side step a request. Lives a minute past its last use."""
    return f"{TAG}:backfill-pace:{exchange}"


def hour_rolled_key(hour: int) -> str:
    """The invocation that rolls ``hour``'s 1-minute candles up into DynamoDB (``SET NX``): one
    write per pair per hour. Lives two hours."""
    return f"{TAG}:candles:rolled:{hour}"


# The newest slot whose tick wrote the prices: a tick of an older slot (an overlapping invocation
# whose exchange answered late) leaves them as they are. Writer and reader: the tick's write, in
# one server-side step. Lives as long as the prices.
WRITTEN_SLOT = f"{TAG}:written-slot"

# "<slot>|<JSON>": health as computed once for that slot, shared by every prices container (it
# reads every latency sample of two minutes: per request, a few hundred requests a second would
# saturate the cache). Writer and readers: the prices function's health route; the fetcher drops
# it whenever it writes what health shows. Lives two slots.
SHARED_HEALTH = f"{TAG}:health"

# HASH of the fetcher's counters and last results (market_data.contracts.TickStats).
# Writer: the tick. Reader: health. No expiry: counters run from the first tick.
STATS = f"{TAG}:stats"
# JSON (market_data.contracts.Heartbeat). Writer: every running fetcher invocation, every slot.
# Reader: health. Expires on its own, so a dead fetcher leaves no "running" trace behind.
HEARTBEAT = f"{TAG}:heartbeat"
HEARTBEAT_TTL_MS = 10 * 60_000
# HASH pair -> a jumped price waiting for the next tick to confirm it. Writer and reader: the tick.
HELD_PRICES = f"{TAG}:held"
# HASH pair -> ms of its last DynamoDB last-known-good write. Writer and reader: the tick (bounded
# writes across invocations). Fields go with the pair's stale copy.
LKG_WRITTEN = f"{TAG}:lkg-written"
# HASH "exchange|pair" -> "until,failures": pairs held off an exchange they failed on, shared by
# every invocation so that overlapping ones route a failing pair the same way. Writer and reader:
# the tick; a hold long over is dropped by the tick that sees it.
FAILURE_HOLDS = f"{TAG}:holds"
# HASH exchange -> epoch ms: no request to that exchange before then (request pacing carried from
# one invocation's slot to the next one's). Writer and reader: the tick. Expires with the heartbeat.
PACE = f"{TAG}:pace"


def ban_key(exchange: str) -> str:
    """JSON (market_data.contracts.Ban): no call to ``exchange`` before ``until``. Writer: the tick
    on a 418/429 or its own weight pause. Readers: every slot's opening, health. Expires with it."""
    return f"{TAG}:ban:{exchange}"


def circuit_key(exchange: str) -> str:
    """HASH (market_data.contracts.CircuitState): ``exchange``'s circuit breaker. Writer: the tick
    of a slot that asked the exchange. Readers: every slot's opening, health. No expiry (4 fields)."""
    return f"{TAG}:circuit:{exchange}"


def kept_key(exchange: str) -> str:
    """HASH key -> JSON: ``exchange``'s slow-moving figures (Coinbase's 24 h stats, Kraken's rolling
    opens), shared so that no invocation reads again what another has just read. Writer and reader:
    the tick. Each figure is aged by the reader; the hash goes after KEPT_TTL_MS without a write."""
    return f"{TAG}:kept:{exchange}"


KEPT_TTL_MS = 2 * 3_600_000


def claim_key(slot: int) -> str:
    """The slot's owner (``SET NX``): the one invocation that fetches it. Lives three slots."""
    return f"{TAG}:claim:{slot}"


# Per-minute windows of the prices function's own figures, summed over every container.
# Writer: each prices container, once per window. Reader: health. Live three windows.
READS_WINDOW_MS = 60_000
READS_WINDOW_TTL_MS = 3 * READS_WINDOW_MS
READ_LATENCY_SAMPLES_KEPT = 1_000  # per window: enough for a p99, small enough to read every time


def reads_key(window: int) -> str:
    """HASH of counts (pairs served fresh, stale, ...) of one minute of prices requests."""
    return f"{TAG}:reads:{window}"


def read_latency_key(window: int) -> str:
    """LIST of read latencies (microseconds) of one minute of prices requests, newest first."""
    return f"{TAG}:read-latency:{window}"
