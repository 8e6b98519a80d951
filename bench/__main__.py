"""``make bench`` (``python -m bench [scenario ...]``): run the scenarios, print a table, write JSON.

Outside CI on purpose: figures depend on the machine. The README shows the latest table and the
machine it came from.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from bench.common import REPO_ROOT, Row

RESULTS = REPO_ROOT / "bench" / "results.json"


def scenarios() -> dict[str, Callable[[list[Row]], list[Row]]]:
    """Each takes the rows measured before it in the same run (the cost model prices them)."""
    from bench import (
        cold_start,
        conditional,
        cost,
        fetch_cycle,
        freshness,
        history,
        read_path,
        stream,
        write_cost,
    )

    return {
        "read": lambda _: read_path.run(),
        "cold": lambda _: cold_start.run(),
        "conditional": lambda _: conditional.run(),
        "fetch": lambda _: fetch_cycle.run(),
        "freshness": lambda _: freshness.run(),
        "writes": lambda _: write_cost.run(),
        "history": lambda _: history.run(),
        "stream": lambda _: stream.run(),  # before cost: its push figures are measured once for both
        "cost": cost.run,  # last: it uses the write cost measured above when there is one
    }


def machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu": cpu,
        "cores": os.cpu_count(),
    }


def render(rows: list[Row]) -> str:
    lines = ["| scenario | case | figures | limit | target | met |", "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        figures = ", ".join(f"{name} {value}" for name, value in row.figures.items())
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(f"| {row.scenario} | {row.case} | {figures} | {row.limit} | {row.target} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    available = scenarios()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"scenarios among {', '.join(available)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in available]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; known: {', '.join(available)}")
    started = time.time()
    rows: list[Row] = []
    for name in args.names or list(available):
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        rows += available[name](rows)
    table = render(rows)
    print(table)
    RESULTS.write_text(
        json.dumps(
            {"machine": machine(), "started": started, "rows": [asdict(row) for row in rows]}, indent=2
        )
        + "\n"
    )
    print(f"\nmachine: {machine()}\nwritten: {RESULTS.relative_to(REPO_ROOT)}", file=sys.stderr)
    return 0 if all(row.met is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
