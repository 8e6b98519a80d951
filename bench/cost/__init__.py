"""Cost model: the monthly AWS bill of the default deployment, from figures measured in this run.

The case: 20 pairs, 1,000 clients each polling GET /api/market-data/prices (all pairs: no
``pairs`` parameter, the request of events/prices_all.json) every 2 s, i.e. 500 requests a second.

In three phases, a module each: ``measure`` takes the per-request, per-pair and per-slot figures
with the production handlers on this machine and reads what template.yaml configures; ``model``
holds the list prices, the stated assumptions and ``monthly_cost``, which multiplies the figures
out into a month's line items; ``report`` turns them into the rows of the results table.
"""

from __future__ import annotations

import time

from bench.common import Row
from bench.cost import measure, report


def run(earlier: list[Row] | None = None) -> list[Row]:
    started = time.perf_counter()
    measured = measure.measure(earlier)
    table = report.table_rows(measured)
    table[0].notes.append(f"scenario ran in {time.perf_counter() - started:.1f} s")
    return table
