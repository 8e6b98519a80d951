"""A pair's status in the registry: the words every function and the API use.

Plain constants (no pydantic) so that the prices function's read path can use them without
loading the models.
"""

from __future__ import annotations

from typing import Final, Literal

PairStatus = Literal["pending", "active", "rejected", "suspended", "revoked"]

PENDING: Final = "pending"  # submitted (or approved again), waiting for the fetcher's verdict
ACTIVE: Final = "active"  # verified or seeded: fetched every slot and served
REJECTED: Final = "rejected"  # refused by verification (unlisted, not trading, illiquid)
SUSPENDED: Final = "suspended"  # no configured exchange trades it any more: served from its last copy
REVOKED: Final = "revoked"  # stopped by an administrator; the record is kept

ALL: tuple[PairStatus, ...] = (PENDING, ACTIVE, REJECTED, SUSPENDED, REVOKED)
SERVED: tuple[PairStatus, ...] = (ACTIVE, SUSPENDED)  # statuses whose prices the API serves
