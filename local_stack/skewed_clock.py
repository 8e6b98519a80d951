"""``LOCAL_CLOCK_OFFSET_S``: run the local stack as a server whose clock is off by that many seconds.

Every wall-clock reading in the stack's process moves: the HTTP ``Date`` header, the simulators'
exchange times, ``fetchedAt``, heartbeats. That is what a client's skew correction has to absorb
(docs/clients.md). Monotonic time (sleeps, timeouts) and ``redis-server``'s own clock do not move:
the service sets only relative expiries, so the cache behaves as on a well-set clock.
"""

from __future__ import annotations

import time

NAME = "LOCAL_CLOCK_OFFSET_S"
LIMIT_S = 86_400.0


def read_offset(value: str | None) -> tuple[float, str | None]:
    """The offset in seconds (0 when unset), or the problem with ``value``."""
    if value is None or not value.strip():
        return 0.0, None
    try:
        offset = float(value)
    except ValueError:
        return 0.0, f"{NAME}: {value!r} is not a number of seconds (e.g. 10 or -10)"
    if not abs(offset) <= LIMIT_S:
        return 0.0, f"{NAME}: {value!r} is more than a day off (at most {LIMIT_S:g} either way)"
    return offset, None


def apply(offset_s: float) -> None:
    """Move this process's wall clock by ``offset_s`` (``time.time`` and ``time.time_ns``, which every
    module here reads through the ``time`` module)."""
    if not offset_s:
        return
    real_time, real_time_ns, offset_ns = time.time, time.time_ns, int(offset_s * 1e9)
    time.time = lambda: real_time() + offset_s  # type: ignore[assignment]
    time.time_ns = lambda: real_time_ns() + offset_ns  # type: ignore[assignment]
