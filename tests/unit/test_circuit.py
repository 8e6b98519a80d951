"""The breaker's decisions come from stored fields and times, never from a timer."""

from __future__ import annotations

import random

from fetcher.circuit import FAILURES_TO_OPEN, MAX_BACKOFF_MS, after_tick
from market_data.contracts import CircuitState

INTERVAL = 4000


def fail(circuit: CircuitState, now: int, rng: random.Random) -> CircuitState:
    return after_tick(circuit, failed=True, now=now, interval_ms=INTERVAL, rng=rng)


def test_opens_after_repeated_failures_and_closes_on_success() -> None:
    rng, circuit = random.Random(1), CircuitState()
    for _ in range(FAILURES_TO_OPEN - 1):
        circuit = fail(circuit, 0, rng)
        assert circuit.state == "closed"
    circuit = fail(circuit, 0, rng)
    assert circuit.state == "open" and not circuit.allows(1) and circuit.display(1) == "open"
    assert circuit.allows(circuit.retry_at) and circuit.display(circuit.retry_at) == "half_open"
    assert after_tick(circuit, failed=False, now=0, interval_ms=INTERVAL, rng=rng) == CircuitState()


def test_each_failed_probe_doubles_the_backoff_with_jitter_up_to_the_cap() -> None:
    rng, circuit, waits = random.Random(2), CircuitState(failures=FAILURES_TO_OPEN - 1), []
    for _ in range(8):
        circuit = fail(circuit, 0, rng)
        waits.append(circuit.retry_at)
    assert waits[1] > waits[0] * 0.9 and waits[3] > waits[1]
    assert max(waits) <= MAX_BACKOFF_MS
    assert CircuitState.from_fields(circuit.as_fields()) == circuit
