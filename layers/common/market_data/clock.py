"""The service's one clock: epoch milliseconds, the unit of every timestamp it stores or serves."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
