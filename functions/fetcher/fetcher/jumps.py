"""Price jumps: a price that moves more than MAX_PRICE_JUMP_RATIO from the last good value in one
tick is held back until the next tick confirms it, so one bad print never reaches users."""

from __future__ import annotations

from collections.abc import Mapping


def _close(a: float, b: float, ratio: float) -> bool:
    return abs(a - b) <= ratio * b


def held_jumps(
    new: Mapping[str, float], last_good: Mapping[str, float], held: Mapping[str, float], *, ratio: float
) -> dict[str, float]:
    """The prices to hold back (pair -> price): a jump from the last good price that does not
    confirm the price held last tick. A price near the last good one passes, and so does a pair
    with no last good value (nothing to compare with)."""
    return {
        pair: price
        for pair, price in new.items()
        if (previous := last_good.get(pair)) is not None
        and not _close(price, previous, ratio)
        and not ((candidate := held.get(pair)) is not None and _close(price, candidate, ratio))
    }
