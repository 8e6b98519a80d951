"""Price jumps are held back one tick; a confirmed level or a return to the last good passes."""

from __future__ import annotations

from fetcher.jumps import held_jumps


def test_small_moves_and_first_prices_pass_and_jumps_are_held() -> None:
    prices = {"A": 105.0, "B": 200.0, "C": 7.0}
    held = held_jumps(prices, {"A": 100.0, "B": 100.0}, {}, ratio=0.25)
    assert held == {"B": 200.0}
    assert set(prices) - set(held) == {"A", "C"}  # what is written


def test_a_jump_confirmed_by_the_next_tick_passes() -> None:
    assert held_jumps({"B": 198.0}, {"B": 100.0}, {"B": 200.0}, ratio=0.25) == {}


def test_a_second_different_jump_is_held_again() -> None:
    assert held_jumps({"B": 400.0}, {"B": 100.0}, {"B": 200.0}, ratio=0.25) == {"B": 400.0}
