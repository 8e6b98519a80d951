"""The pairs a tick works on: the registry, read every tick (one Query), so that a change takes
effect from the next slot. While DynamoDB fails, the last registry read keeps the cache fresh: a
registry outage must not stop prices.
"""

from __future__ import annotations

from dataclasses import dataclass

from fetcher.deps import Fetcher
from fetcher.verify import pending_since
from market_data import store
from market_data.models import PairRecord
from market_data.observability import logger
from market_data.statuses import ACTIVE, PENDING, SUSPENDED


@dataclass(frozen=True)
class Pairs:
    records: list[PairRecord]

    @property
    def status(self) -> dict[str, str]:
        return {record.pair: record.status for record in self.records}

    @property
    def reasons(self) -> dict[str, str | None]:
        return {record.pair: record.reason for record in self.records}

    @property
    def active(self) -> list[str]:
        return [record.pair for record in self.records if record.status == ACTIVE]

    @property
    def suspended(self) -> list[str]:
        return [record.pair for record in self.records if record.status == SUSPENDED]

    @property
    def pending(self) -> list[PairRecord]:
        return [record for record in self.records if record.status == PENDING]

    @property
    def newest_pending(self) -> int:
        """When the last pending pair became pending: verdicts need listings read after it."""
        return max((pending_since(record) for record in self.pending), default=0)


def read_pairs(fetcher: Fetcher, now: int) -> Pairs:
    """Every pair of the registry with its status; an empty registry is seeded from ``TRADING_PAIRS``."""
    deps, state = fetcher.deps, fetcher.state
    try:
        registry = store.list_registry(deps.table)
        if not registry:
            seeded = store.seed_registry(deps.table, deps.settings.trading_pairs, now_ms=now)
            logger.info("pair registry seeded", pairs=seeded)
            registry = store.list_registry(deps.table)
    except store.StoreUnavailableError as exc:
        if state.registry is None:
            raise
        logger.warning("pair registry unreadable; using the last one read", error=exc.cause)
        state.count_store_error()
        return Pairs(state.registry)
    state.registry = sorted(registry, key=lambda record: record.pair)
    return Pairs(state.registry)
