"""Price jumps: a price that moves more than MAX_PRICE_JUMP_RATIO from the last good value in one
tick is held back until the next tick confirms it, so one bad print never reaches users."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class JumpVerdicts:
    accepted: set[str] = field(default_factory=set)
    held: dict[str, float] = field(default_factory=dict)  # pair -> the unconfirmed price


def _close(a: float, b: float, ratio: float) -> bool:
    return abs(a - b) <= ratio * b


def judge_jumps(
    new: Mapping[str, float], last_good: Mapping[str, float], held: Mapping[str, float], *, ratio: float
) -> JumpVerdicts:
    """Accept a price near the last good one, or one that confirms the price held last tick;
    hold any other jump. A pair with no last good value is accepted (nothing to compare with)."""
    verdicts = JumpVerdicts()
    for pair, price in new.items():
        previous = last_good.get(pair)
        candidate = held.get(pair)
        if (
            previous is None
            or _close(price, previous, ratio)
            or (candidate is not None and _close(price, candidate, ratio))
        ):
            verdicts.accepted.add(pair)
        else:
            verdicts.held[pair] = price
    return verdicts
