"""The exchange circuit breaker's moves. Its state (``market_data.contracts.CircuitState``) is kept
in the cache so it survives from one invocation to the next: open after repeated failed ticks,
exponential backoff with jitter, one probe when half-open (the slot claim already makes that probe
the only request), closed on success.

Why not a library: pybreaker, the well-kept one, keeps state per process or in Redis with a fixed
reset timeout and a timer-free "half-open on next call"; here the backoff must grow with each
failed probe, the decision must come from a stored time that every invocation reads in the same
round trip as its slot claim, and the state must fall back to memory while the cache is lost.
That is the few lines below rather than an adapter around pybreaker's storage API.
"""

from __future__ import annotations

import random

from market_data.contracts import CircuitState

# Consecutive failed ticks (no ticker fetched, an exchange error) that open the circuit.
FAILURES_TO_OPEN = 3
# The first wait after opening is one of these; each failed probe doubles it, up to the cap.
MAX_BACKOFF_MS = 120_000


def after_tick(
    circuit: CircuitState, *, failed: bool, now: int, interval_ms: int, rng: random.Random
) -> CircuitState:
    """The breaker after a tick that asked the exchange: closed again on success; on failure, open
    after ``FAILURES_TO_OPEN`` ticks, or at once when the failed tick was an open circuit's probe."""
    if not failed:
        return CircuitState()
    failures = circuit.failures + 1
    probing = circuit.state == "open"  # a tick let through an open circuit is the probe
    if probing or failures >= FAILURES_TO_OPEN:
        opens = circuit.opens + 1
        backoff = min(interval_ms * 2 ** (opens - 1), MAX_BACKOFF_MS)
        # Full jitter on the upper half: overlapping deployments do not probe in step.
        wait = int(backoff * rng.uniform(0.5, 1.0))
        opened_at = circuit.opened_at if probing and circuit.opened_at else now
        return CircuitState("open", failures, opens, now + max(wait, interval_ms), opened_at)
    return CircuitState("closed", failures, circuit.opens, 0)
