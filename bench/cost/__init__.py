"""Cost model: the monthly AWS bill of the default deployment, from figures measured in this run.

The case: 20 pairs, 1,000 clients each polling GET /api/market-data/prices (all pairs: no
``pairs`` parameter, the request of events/prices_all.json) every 2 s, i.e. 500 requests a second.

In three phases, a module each: ``measure`` takes the per-request, per-pair and per-slot figures
with the production handlers on this machine and reads what template.yaml configures; ``model``
holds the list prices, the stated assumptions and ``monthly_cost``, which multiplies the figures
out into a month's line items; ``report`` turns them into the rows of the results table.

Push over WebSocket has the same three: ``measure_push`` (the broadcaster, the stream function and
the registry measured, shared with the stream scenario), ``push_model`` (``push_monthly_cost``:
1,000 and 10,000 clients connected all month) and ``push_report`` (its rows beside polling).
"""

from __future__ import annotations

import time

from bench.common import Row
from bench.cost import measure, report


def run(earlier: list[Row] | None = None) -> list[Row]:
    from bench.cost import measure_push, push_report

    started = time.perf_counter()
    measured = measure.measure(earlier)
    table = report.table_rows(measured)
    # Push beside polling: measured here unless the stream scenario measured it earlier in this run.
    table += push_report.cost_rows(measure_push.measure_push(), measured)
    table[0].notes.append(f"scenario ran in {time.perf_counter() - started:.1f} s")
    return table
