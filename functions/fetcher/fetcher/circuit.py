"""The exchange circuit breaker, with its state in the cache so it survives from one invocation to
the next: open after repeated failed ticks, exponential backoff with jitter, one probe when
half-open (the slot claim already makes that probe the only request), closed on success.

Why not a library: pybreaker, the well-kept one, keeps state per process or in Redis with a fixed
reset timeout and a timer-free "half-open on next call"; here the backoff must grow with each
failed probe, the decision must come from a stored time that every invocation reads in the same
round trip as its slot claim, and the state must fall back to memory while the cache is lost.
That is the few lines below rather than an adapter around pybreaker's storage API.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Consecutive failed ticks (no ticker fetched, an exchange error) that open the circuit.
FAILURES_TO_OPEN = 3
# The first wait after opening is one of these; each failed probe doubles it, up to the cap.
MAX_BACKOFF_MS = 120_000


@dataclass(frozen=True)
class Circuit:
    state: str = "closed"  # closed | open | half_open
    failures: int = 0  # consecutive failed ticks
    opens: int = 0  # consecutive openings: the backoff exponent
    retry_at: int = 0  # ms: an open circuit lets one probe through from then on

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Circuit:
        if not fields:
            return cls()
        return cls(
            state=fields.get("state", "closed"),
            failures=int(fields.get("failures", 0)),
            opens=int(fields.get("opens", 0)),
            retry_at=int(fields.get("retryAt", 0)),
        )

    def as_fields(self) -> dict[str, str]:
        return {
            "state": self.state,
            "failures": str(self.failures),
            "opens": str(self.opens),
            "retryAt": str(self.retry_at),
        }

    def display(self, now: int) -> str:
        """What operators see: an open circuit whose backoff has passed is half-open."""
        return "half_open" if self.state == "open" and now >= self.retry_at else self.state

    def allows(self, now: int) -> bool:
        """Closed: yes. Open: only once the backoff has passed (that tick is the probe)."""
        return self.state != "open" or now >= self.retry_at

    def after_tick(self, *, failed: bool, now: int, interval_ms: int, rng: random.Random) -> Circuit:
        if not failed:
            return Circuit()
        failures = self.failures + 1
        probing = self.state == "open"  # a tick let through an open circuit is the probe
        if probing or failures >= FAILURES_TO_OPEN:
            opens = self.opens + 1
            backoff = min(interval_ms * 2 ** (opens - 1), MAX_BACKOFF_MS)
            # Full jitter on the upper half: overlapping deployments do not probe in step.
            wait = int(backoff * rng.uniform(0.5, 1.0))
            return Circuit("open", failures, opens, now + max(wait, interval_ms))
        return Circuit("closed", failures, self.opens, 0)
