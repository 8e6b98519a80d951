"""The broadcaster's memory of what it pushed: which pairs' entries changed since the last push."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from market_data.cache.connection import translated
from market_data.cache.keys import STREAM_CANDLE_MINUTE, STREAM_SENT, STREAM_SENT_TTL_MS

if TYPE_CHECKING:
    from redis import Redis

# Returns the previous fingerprints and stores the new ones in one step: two broadcasters of
# consecutive slots never both miss a change.
_SWAP = """
local n = (#ARGV - 1) / 2
local previous = redis.call('HMGET', KEYS[1], unpack(ARGV, 2, n + 1))
for i = 2, n + 1 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + n])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return previous
"""


@translated
def changed_since_pushed(client: Redis, fingerprints: Mapping[str, str]) -> list[str]:
    """The pairs whose fingerprint differs from the one last pushed, recording the new ones."""
    if not fingerprints:
        return []
    pairs = list(fingerprints)
    arguments = [str(STREAM_SENT_TTL_MS), *pairs, *(fingerprints[pair] for pair in pairs)]
    previous: list[bytes | None] = client.eval(_SWAP, 1, STREAM_SENT, *arguments)  # type: ignore[assignment]
    return [
        pair
        for pair, old in zip(pairs, previous, strict=True)
        if (old.decode() if old is not None else None) != fingerprints[pair]
    ]


_ADVANCE = """
local previous = redis.call('GET', KEYS[1])
if previous and tonumber(previous) >= tonumber(ARGV[1]) then
  return -1
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return tonumber(previous or '0')
"""


@translated
def advance_candle_minute(client: Redis, closed_minute: int) -> int | None:
    """Mark ``closed_minute``'s candles as pushed. Returns the minute pushed before it (0: none
    yet), or None when it (or a later one) was pushed already: nothing to push."""
    previous = int(client.eval(_ADVANCE, 1, STREAM_CANDLE_MINUTE, closed_minute, STREAM_SENT_TTL_MS))  # type: ignore[arg-type]
    return None if previous < 0 else previous
