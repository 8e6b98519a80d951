"""Waits between attempts that spread clients out instead of lining them up.

When an endpoint drops every connection at once, every client notices at the same moment; retrying
after a fixed or merely doubling delay brings them all back together, again and again (a reconnect
storm). Full jitter (a uniform draw between 0 and the exponential ceiling) spreads them over the
whole window; the cap bounds the wait; the ceiling only comes back down after an attempt that
proved the endpoint healthy (``reset``), so a server that accepts and drops at once is not hammered.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(
        self, base_s: float = 0.5, cap_s: float = 30.0, *, floor_s: float = 0.05,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:  # fmt: skip
        """``floor_s``: the least wait, so even the luckiest draw is never a tight loop."""
        self.base_s, self.cap_s, self.floor_s = base_s, cap_s, floor_s
        self._uniform = uniform
        self.attempts = 0

    def ceiling_s(self) -> float:
        """The largest wait the next draw may give."""
        return min(self.cap_s, self.base_s * 2 ** min(self.attempts, 30))

    def next_delay_s(self) -> float:
        delay = max(self.floor_s, self._uniform(0.0, self.ceiling_s()))
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0
