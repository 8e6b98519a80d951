"""Price jumps are held back one tick; a confirmed level or a return to the last good passes."""

from __future__ import annotations

from fetcher.jumps import judge_jumps


def test_small_moves_and_first_prices_pass_and_jumps_are_held() -> None:
    verdicts = judge_jumps({"A": 105.0, "B": 200.0, "C": 7.0}, {"A": 100.0, "B": 100.0}, {}, ratio=0.25)
    assert verdicts.accepted == {"A", "C"}
    assert verdicts.held == {"B": 200.0}


def test_a_jump_confirmed_by_the_next_tick_passes() -> None:
    verdicts = judge_jumps({"B": 198.0}, {"B": 100.0}, {"B": 200.0}, ratio=0.25)
    assert verdicts.accepted == {"B"} and verdicts.held == {}


def test_a_second_different_jump_is_held_again() -> None:
    verdicts = judge_jumps({"B": 400.0}, {"B": 100.0}, {"B": 200.0}, ratio=0.25)
    assert verdicts.held == {"B": 400.0}
