"""Candles in the cache: each tick's served prices joined into 1-minute candles, the closed ones
kept a day, the 15-minute closes the sparklines draw, and their reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import orjson

from market_data.cache.connection import translated
from market_data.cache.keys import (
    BACKFILLED,
    CANDLES_TTL_MS,
    OPEN_CANDLES,
    SPARKLINES,
    WRITTEN_SLOT,
    backfill_claim_key,
    backfill_pace_key,
    hour_rolled_key,
    minute_candles_key,
)
from market_data.candles import (
    MINUTE_MS,
    MINUTE_RETENTION_MS,
    SAMPLES,
    SPARKLINE_POINTS,
    SPARKLINE_STEP_MS,
    Candle,
    bucket,
)

if TYPE_CHECKING:
    from redis import Redis

# One tick's samples, in one server-side step. A pair's open candle is
# "time|open|high|low|close|samples|first slot|last slot|first at|last at"; open and close are the
# samples of the earliest and latest slot, so two overlapping ticks merge the same whatever their
# order. A sample of a minute after the open candle's closes it: the closed candle goes into the
# pair's sorted set as the API's JSON (its numbers kept as the fetcher wrote them), candles past the
# day are trimmed, and its close becomes its 15-minute interval's in the pair's sparkline. A tick
# whose prices a newer slot's have replaced (WRITTEN_SLOT) was never served: it adds nothing.
_SAMPLE = """
local slot = tonumber(ARGV[1])
if tonumber(redis.call('GET', KEYS[2]) or '-1') > slot then
  return -1
end
local minute = tonumber(ARGV[2])
local step = tonumber(ARGV[5])
local points = tonumber(ARGV[6])
local closed = 0
local function sparkline(pair, time, close)
  local at = time - (time % step)
  local raw = redis.call('HGET', KEYS[3], pair)
  local first, list = at, {}
  if raw then
    local sep = string.find(raw, '|', 1, true)
    first = tonumber(string.sub(raw, 1, sep - 1))
    for part in string.gmatch(string.sub(raw, sep + 1) .. ',', '([^,]*),') do list[#list + 1] = part end
  end
  if at < first then
    return
  end
  local index = (at - first) / step + 1
  for k = #list + 1, index - 1 do list[k] = '' end
  list[index] = close
  while first < at - (points - 1) * step do
    table.remove(list, 1)
    first = first + step
  end
  redis.call('HSET', KEYS[3], pair, string.format('%.0f', first) .. '|' .. table.concat(list, ','))
end
for i = 0, (#ARGV - 6) / 3 - 1 do
  local pair, price, at = ARGV[7 + 3 * i], ARGV[8 + 3 * i], ARGV[9 + 3 * i]
  local key = KEYS[4 + i]
  local raw = redis.call('HGET', KEYS[1], pair)
  local c = nil
  if raw then
    local f = {}
    for part in string.gmatch(raw, '[^|]+') do f[#f + 1] = part end
    local time = tonumber(f[1])
    if time == minute then
      c = f
    elseif time < minute then
      redis.call('ZADD', key, f[1], string.format(
        '{"time":%s,"open":%s,"high":%s,"low":%s,"close":%s,"volume":null,"samples":%s,' ..
        '"source":"samples","firstAt":%s,"lastAt":%s}', f[1], f[2], f[3], f[4], f[5], f[6], f[9], f[10]))
      redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. ARGV[3])
      redis.call('PEXPIRE', key, ARGV[4])
      sparkline(pair, time, f[5])
      closed = closed + 1
    else
      c = false
    end
  end
  if c == nil then
    c = {ARGV[2], price, price, price, price, '0', ARGV[1], ARGV[1], at, at}
  end
  if c then
    local value = tonumber(price)
    if slot < tonumber(c[7]) then c[2] = price; c[7] = ARGV[1]; c[9] = at end
    if slot >= tonumber(c[8]) then c[5] = price; c[8] = ARGV[1]; c[10] = at end
    if value > tonumber(c[3]) then c[3] = price end
    if value < tonumber(c[4]) then c[4] = price end
    c[6] = tostring(tonumber(c[6]) + 1)
    redis.call('HSET', KEYS[1], pair, table.concat(c, '|'))
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return closed
"""


@translated
def add_samples(client: Redis, *, slot: int, slot_ms: int, samples: Mapping[str, tuple[float, int]]) -> int:
    """Join one tick's served prices (pair -> (price, exchange time)) to their 1-minute candles.
    Returns how many candles closed, or -1 when a newer slot's prices had replaced this tick's."""
    if not samples:
        return 0
    pairs = list(samples)
    minute = bucket(slot_ms, MINUTE_MS)
    arguments: list[object] = [
        slot, minute, minute - MINUTE_RETENTION_MS, CANDLES_TTL_MS, SPARKLINE_STEP_MS, SPARKLINE_POINTS,
    ]  # fmt: skip
    for pair in pairs:
        price, at = samples[pair]
        arguments += [pair, repr(float(price)), int(at)]
    keys = [OPEN_CANDLES, WRITTEN_SLOT, SPARKLINES, *(minute_candles_key(pair) for pair in pairs)]
    return int(client.eval(_SAMPLE, len(keys), *keys, *arguments))  # type: ignore[arg-type]


def decode_open(raw: bytes) -> Candle:
    f = raw.decode().split("|")
    return Candle(
        int(f[0]), float(f[1]), float(f[2]), float(f[3]), float(f[4]), None, int(f[5]), SAMPLES,
        int(f[8]), int(f[9]),
    )  # fmt: skip


@translated
def read_minutes(
    client: Redis, pairs: Sequence[str], start: int, end: int
) -> dict[str, tuple[list[bytes], Candle | None]]:
    """Each pair's closed 1-minute candles in ``[start, end)`` as stored (the API's JSON, oldest
    first), and its open candle when that lies in the range too; one round trip."""
    pipe = client.pipeline(transaction=False)
    for pair in pairs:
        pipe.zrangebyscore(minute_candles_key(pair), start, f"({end}")
    pipe.hmget(OPEN_CANDLES, list(pairs))
    *closed, opened = pipe.execute()
    found: dict[str, tuple[list[bytes], Candle | None]] = {}
    for pair, members, raw in zip(pairs, closed, opened, strict=True):
        candle = decode_open(raw) if raw else None
        if candle is not None and not start <= candle.time < end:
            candle = None
        found[pair] = (members, candle)
    return found


@translated
def claim_hour(client: Redis, hour: int, owner: str) -> bool:
    """True for the one invocation that rolls ``hour`` up."""
    return bool(client.set(hour_rolled_key(hour), owner, nx=True, px=2 * 3_600_000))


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@translated
def release_hour(client: Redis, hour: int, owner: str) -> None:
    """Give the hour back (its roll-up failed), unless another invocation holds it by now."""
    client.eval(_RELEASE, 1, hour_rolled_key(hour), owner)


@translated
def read_sparklines(client: Redis, pairs: Sequence[str]) -> dict[str, tuple[int, list[str]]]:
    """Each pair's 15-minute closes of the last day as stored: the first interval's start and the
    closes from it on ("" where an interval had none); a pair with none is left out."""
    stored: list[bytes | None] = client.hmget(SPARKLINES, list(pairs))  # type: ignore[assignment]
    found: dict[str, tuple[int, list[str]]] = {}
    for pair, raw in zip(pairs, stored, strict=True):
        if raw:
            first, _, closes = raw.decode().partition("|")
            found[pair] = (int(first), closes.split(","))
    return found


# An exchange's closed candles join the pair's day of minutes where nothing was sampled (a
# minute this service served keeps its own candle) and before the minute now open.
_ADD_EXCHANGE = """
local open = redis.call('HGET', KEYS[2], ARGV[1])
local open_minute = open and tonumber(string.match(open, '^[^|]+')) or math.huge
local added = 0
for i = 4, #ARGV, 2 do
  local time = tonumber(ARGV[i])
  if time < open_minute and time >= tonumber(ARGV[2]) and redis.call('ZCOUNT', KEYS[1], time, time) == 0 then
    redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
    added = added + 1
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return added
"""


@translated
def add_exchange_candles(client: Redis, pair: str, candles: Sequence[Candle], *, now_ms: int) -> int:
    """Backfilled 1-minute candles into the pair's day, then its sparkline drawn again from every
    minute it now holds. Returns how many were added."""
    if not candles:
        return 0
    arguments: list[object] = [pair, bucket(now_ms, MINUTE_MS) - MINUTE_RETENTION_MS, CANDLES_TTL_MS]
    for candle in candles:
        arguments += [candle.time, candle.encode()]
    key = minute_candles_key(pair)
    added = int(client.eval(_ADD_EXCHANGE, 2, key, OPEN_CANDLES, *arguments))  # type: ignore[arg-type]
    closes: dict[int, tuple[int, str]] = {}
    for raw, score in client.zrange(key, 0, -1, withscores=True):  # type: ignore[union-attr]
        time = int(score)
        at = bucket(time, SPARKLINE_STEP_MS)
        if time >= closes.get(at, (-1, ""))[0]:
            closes[at] = (time, repr(orjson.loads(raw)["close"]))
    first = bucket(now_ms, SPARKLINE_STEP_MS) - (SPARKLINE_POINTS - 1) * SPARKLINE_STEP_MS
    line = [closes.get(first + i * SPARKLINE_STEP_MS, (0, ""))[1] for i in range(SPARKLINE_POINTS)]
    while line and not line[-1]:
        line.pop()
    client.hset(SPARKLINES, pair, f"{first}|{','.join(line)}")
    return added


@translated
def backfilled(client: Redis, pairs: Sequence[str]) -> set[str]:
    """Of ``pairs``, those already backfilled."""
    found: list[bytes | None] = client.hmget(BACKFILLED, list(pairs))  # type: ignore[assignment]
    return {pair for pair, at in zip(pairs, found, strict=True) if at is not None}


@translated
def forget_backfilled(client: Redis, pairs: Sequence[str]) -> None:
    """These pairs' history is to be backfilled again (they were not served for a while)."""
    client.hdel(BACKFILLED, *pairs)


@translated
def claim_backfill(client: Redis, pair: str, owner: str) -> bool:
    return bool(client.set(backfill_claim_key(pair), owner, nx=True, px=10 * 60_000))


@translated
def finish_backfill(client: Redis, pair: str, owner: str, *, done_at: int | None) -> None:
    """Give the pair's claim back; with ``done_at``, mark it backfilled (else it is tried again)."""
    if done_at is not None:
        client.hset(BACKFILLED, pair, str(done_at))
    client.eval(_RELEASE, 1, backfill_claim_key(pair), owner)


# The next request time for one exchange's backfill, for every invocation at once: the later of
# now and the stored time, and the stored time moved a gap past it.
_RESERVE = """
local at = math.max(tonumber(ARGV[1]), tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], string.format('%.0f', at + tonumber(ARGV[2])), 'PX', ARGV[3])
return string.format('%.0f', at)
"""
_NOT_BEFORE = """
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""
PACE_TTL_MS = 60_000


@translated
def reserve_backfill_request(client: Redis, exchange: str, *, gap_ms: int, now_ms: int) -> int:
    """When this invocation's next backfill request to ``exchange`` may go (epoch ms)."""
    at = client.eval(_RESERVE, 1, backfill_pace_key(exchange), now_ms, gap_ms, PACE_TTL_MS)
    return int(at)  # type: ignore[arg-type]


@translated
def backfill_not_before(client: Redis, exchange: str, at_ms: int, *, now_ms: int) -> None:
    """No backfill request to ``exchange`` before ``at_ms`` (a gap from an answer, a Retry-After)."""
    client.eval(_NOT_BEFORE, 1, backfill_pace_key(exchange), at_ms, max(at_ms - now_ms, 0) + PACE_TTL_MS)
