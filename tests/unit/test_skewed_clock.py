"""LOCAL_CLOCK_OFFSET_S: a bad value is named before the local stack starts; a good one moves the
wall clock and nothing else."""

from __future__ import annotations

import time

import pytest

from local_stack import skewed_clock


@pytest.mark.parametrize(
    ("value", "expected"), [(None, 0.0), ("", 0.0), ("10", 10.0), ("-2.5", -2.5), (" 86400 ", 86_400.0)]
)
def test_an_offset_is_read_in_seconds(value: str | None, expected: float) -> None:
    assert skewed_clock.read_offset(value) == (expected, None)


@pytest.mark.parametrize(("value", "named"), [("ten", "'ten'"), ("86401", "'86401'"), ("nan", "'nan'")])
def test_a_bad_offset_is_a_problem_naming_it(value: str, named: str) -> None:
    offset, problem = skewed_clock.read_offset(value)
    assert offset == 0.0 and problem is not None
    assert problem.startswith("LOCAL_CLOCK_OFFSET_S: ") and named in problem


def test_applying_moves_the_wall_clock_and_not_the_monotonic_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", time.time)  # restored after the test
    monkeypatch.setattr(time, "time_ns", time.time_ns)
    before, mono_before = time.time(), time.monotonic()
    skewed_clock.apply(-10)
    moved, moved_ns, mono_after = time.time(), time.time_ns(), time.monotonic()
    assert -10.5 < moved - before < -9.5 and abs(moved_ns / 1e9 - moved) < 0.5
    assert 0 <= mono_after - mono_before < 0.5
