"""Trading pairs as users write them (``BTC/USDT``): parsing and normalisation in one place."""

from __future__ import annotations

import re
from functools import lru_cache

from market_data.errors import InvalidPairError

MAX_PAIRS_PER_REQUEST = 100
# Letters and digits on both sides, bounded so a key or a header can never grow without limit.
PAIR_PATTERN = re.compile(r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$")


def normalise_pair(raw: str) -> str:
    """Return the canonical upper-case ``BASE/QUOTE`` form, or raise naming the bad value."""
    pair = raw.strip().upper()
    if not PAIR_PATTERN.fullmatch(pair):
        raise InvalidPairError(
            f"invalid pair {raw!r}: expected BASE/QUOTE with letters and digits, e.g. BTC/USDT"
        )
    return pair


# Clients poll with the same few query strings again and again: parsed once per container.
# Only valid values are kept (an error is raised, never cached), and results are immutable.
@lru_cache(maxsize=256)
def parse_pairs_param(raw: str | None) -> tuple[str, ...] | None:
    """Parse the ``pairs`` query parameter: comma-separated, duplicates collapsed, empties ignored.

    ``None`` (parameter left out) means every listed pair. A parameter that holds nothing but
    empty entries is an error rather than "everything", so a client bug cannot become a full dump.
    """
    if raw is None:
        return None
    entries = [entry for entry in raw.split(",") if entry.strip()]
    if not entries:
        raise InvalidPairError(f"invalid pairs {raw!r}: no pair given; expected e.g. pairs=BTC/USDT,ETH/USDT")
    pairs = tuple(dict.fromkeys(normalise_pair(entry) for entry in entries))
    if len(pairs) > MAX_PAIRS_PER_REQUEST:
        raise InvalidPairError(
            f"too many pairs: {len(pairs)} requested, at most {MAX_PAIRS_PER_REQUEST} per request"
        )
    return pairs
