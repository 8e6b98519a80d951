"""GET /history: a pair's candles from the cache (1-minute, the last day) and DynamoDB (hourly, 90
days); never an exchange. Intervals without data are listed in ``gaps``, never invented. While the
cache is lost every interval is answered from the hourly candles, and the answer says so.

A day of 1-minute candles is served as stored (the API's JSON), joined rather than parsed and
encoded again: the read costs little more than the cache read itself (``make bench``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from market_data import cache, store
from market_data.candles import (
    HOUR_MS,
    HOURLY_RETENTION_MS,
    INTERVALS_MS,
    MINUTE_MS,
    MINUTE_RETENTION_MS,
    Candle,
    bucket,
    decode,
    gaps,
    roll_up,
    stored_times,
)
from market_data.config import Settings
from market_data.errors import InvalidPairError, InvalidRequestError
from market_data.observability import logger
from market_data.pairs import normalise_pair
from market_data.statuses import REVOKED, SERVED

DEFAULT_INTERVAL = "1m"
DEFAULT_LIMIT = 500
MAX_LIMIT = 1_500  # a day of 1-minute candles (1,440) in one answer
# How far back one request may reach: what is kept at that interval.
MAX_RANGE_MS = {
    "1m": MINUTE_RETENTION_MS,
    "5m": MINUTE_RETENTION_MS,
    "15m": MINUTE_RETENTION_MS,
    "1h": HOURLY_RETENTION_MS,
}
FALLBACK_REASON = "cache unavailable: answered from the hourly candles kept in DynamoDB"


class NeverListedError(LookupError):
    """The pair has no candle and has never been listed: it has no history to give."""


@dataclass(frozen=True)
class HistoryQuery:
    pair: str
    interval: str
    start: int  # the first interval's start (``from`` rounded down to the interval)
    end: int  # exclusive: the interval after ``to``'s
    limit: int
    newest: bool  # no ``from``: the newest ``limit`` candles before ``to``, else the oldest from ``from``


def parse_query(parameters: dict[str, str], now: int) -> HistoryQuery:
    """The query, or ``InvalidPairError``/``InvalidRequestError`` naming the bad parameter."""
    raw_pair = parameters.get("pair")
    if raw_pair is None or not raw_pair.strip():
        raise InvalidPairError("missing pair: expected e.g. pair=BTC/USDT")
    pair = normalise_pair(raw_pair)
    interval = parameters.get("interval", DEFAULT_INTERVAL)
    if interval not in INTERVALS_MS:
        raise InvalidRequestError(f"invalid interval {interval!r}: expected one of {', '.join(INTERVALS_MS)}")
    limit = _integer(parameters, "limit", DEFAULT_LIMIT)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequestError(f"invalid limit {limit}: expected 1 to {MAX_LIMIT}")
    step, reach = INTERVALS_MS[interval], MAX_RANGE_MS[interval]
    to = _integer(parameters, "to", now)
    newest = "from" not in parameters
    start = _integer(parameters, "from", max(to - (limit - 1) * step, to - reach))
    if start < 0 or to < 0:
        raise InvalidRequestError(
            f"invalid {'from' if start < 0 else 'to'}: a time is ms since 1970, not negative"
        )
    if start > to:
        raise InvalidRequestError(f"invalid from {start}: after to {to}")
    if to - start > reach:
        raise InvalidRequestError(
            f"invalid from {start}: {interval} candles reach back {reach // HOUR_MS} h from to at most "
            f"({to - start} ms asked)"
        )
    return HistoryQuery(pair, interval, bucket(start, step), bucket(to, step) + step, limit, newest)


def _integer(parameters: dict[str, str], name: str, default: int) -> int:
    raw = parameters.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequestError(f"invalid {name} {raw!r}: expected an integer") from None


def read_history(query: HistoryQuery, *, settings: Settings, now: int) -> bytes:
    """The answer's JSON; raises ``NeverListedError``, or ``StoreUnavailableError`` when the cache
    is lost and DynamoDB does not answer either."""
    step = INTERVALS_MS[query.interval]
    try:
        client = cache.get_client(settings)
        reach_from = max(query.start, bucket(now - MINUTE_RETENTION_MS, step))
        closed, still_open = cache.read_minutes(client, [query.pair], reach_from, query.end)[query.pair]
        # Found nothing: a pair without candles here, or a cache flushed or failed over.
        cached = None if closed or still_open else cache.read_prices(client, [query.pair])
    except cache.CacheUnavailableError as exc:
        logger.warning("cache unreachable; history from the hourly candles", error=exc.cause)
        return _from_hourly(query, settings=settings, now=now)
    if cached is not None and not cached.populated:  # the minutes are gone; the hours are kept
        return _from_hourly(query, settings=settings, now=now)
    listed = cached is None or bool(cached.listed)
    if query.interval == "1m":
        stored = list(closed) + ([still_open.encode()] if still_open else [])
        stored = stored[-query.limit :] if query.newest else stored[: query.limit]
        times = stored_times(stored, MINUTE_MS)
        return _answer(query, times, b",".join(stored), settings=settings, now=now, listed=listed)
    minutes = [decode(raw) for raw in closed] + ([still_open] if still_open else [])
    candles = {c.time: c for c in roll_up(minutes, step)}
    if query.interval == "1h":
        try:
            hourly = store.read_hourly_candles(store.get_table(settings), query.pair, query.start, query.end)
        except store.StoreUnavailableError as exc:
            logger.warning("hourly candles unreachable; the last day only", error=exc.cause)
            hourly = []
        # A stored hour is whole; the cache's oldest hour may have been trimmed part-way.
        candles.update({c.time: c for c in hourly})
    ordered = [candles[t] for t in sorted(candles)]
    return _candles_answer(query, ordered, settings=settings, now=now, listed=listed)


def _from_hourly(query: HistoryQuery, *, settings: Settings, now: int) -> bytes:
    hourly = store.read_hourly_candles(store.get_table(settings), query.pair, query.start, query.end)
    hour_query = HistoryQuery(
        query.pair, "1h", bucket(query.start, HOUR_MS), bucket(query.end - 1, HOUR_MS) + HOUR_MS,
        query.limit, query.newest,
    )  # fmt: skip
    fallback = query.interval != "1h"
    return _candles_answer(hour_query, hourly, settings=settings, now=now, listed=False, fallback=fallback)


def _candles_answer(
    query: HistoryQuery,
    candles: list[Candle],
    *,
    settings: Settings,
    now: int,
    listed: bool,
    fallback: bool = False,
) -> bytes:
    candles = candles[-query.limit :] if query.newest else candles[: query.limit]
    joined = b",".join(candle.encode() for candle in candles)
    times = [c.time for c in candles]
    return _answer(query, times, joined, settings=settings, now=now, listed=listed, fallback=fallback)


def _answer(
    query: HistoryQuery,
    times: Sequence[int],
    joined: bytes,
    *,
    settings: Settings,
    now: int,
    listed: bool,
    fallback: bool = False,
) -> bytes:
    """``listed``: the cache lists the pair now. A pair with no candle in the range that is not
    listed and never was has no history to give."""
    if not times and not listed and not _ever_listed(query.pair, settings):
        raise NeverListedError(f"not listed: {query.pair} has never been listed, so it has no history")
    step = INTERVALS_MS[query.interval]
    # The window the answer covers: cut where ``limit`` cut it; the interval now open is no gap.
    start = times[0] if times and query.newest and len(times) == query.limit else query.start
    end = times[-1] + step if times and not query.newest and len(times) == query.limit else query.end
    end = min(end, bucket(now, step) + (step if times and times[-1] == bucket(now, step) else 0))
    head = orjson.dumps({"pair": query.pair, "interval": query.interval})[:-1]
    tail: dict[str, object] = {"gaps": gaps(times, step, start, max(end, start))}
    if fallback:
        tail["fallback"] = {"interval": "1h", "reason": FALLBACK_REASON}
    return head + b',"candles":[' + joined + b"]," + orjson.dumps(tail)[1:]


def _ever_listed(pair: str, settings: Settings) -> bool:
    """The registry has the pair as listed once (active, suspended, or revoked since), or it has
    an hourly candle; unreadable, it is given the benefit of the doubt."""
    try:
        table = store.get_table(settings)
        record = store.get_record(table, pair)
        if record is not None and record.status in (*SERVED, REVOKED):
            return True
        return bool(store.read_hourly_candles(table, pair, 0, 2**53, limit=1))
    except store.StoreUnavailableError:
        return True
