"""Cold start: start-up plus the first invocation of each handler in a fresh process.

The code is laid out as ``sam build`` lays it out (the function's code in one directory, the
layer's packages in another, both on the path as /var/task and /opt/python are on Lambda), built
for this machine's Python and architecture. Figures are medians of repeated fresh processes,
beside ``import redis`` alone in the same layout: the least any cache reader imports.

Two layouts answer whether to ship bytecode: source only, which is what ``sam build`` alone
produces (it unpacks wheels without compiling them, and Lambda cannot write .pyc files to its
read-only code directories, so every cold start compiles what it imports), and bytecode compiled
as ``make build`` compiles it.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, Row, configure_service, quiet_stdout, real_parts

RUNS = 15
TARGET_PRICES_RATIO = 1.6
HANDLERS = {
    "prices": ("functions/prices_api", "prices_api.handler", "prices_get.json"),
    "whitelist": ("functions/whitelist", "whitelist.handler", "whitelist_get.json"),
    "fetcher import": ("functions/fetcher", "fetcher.handler", None),
}

PROBE = """
import json, sys, time
started = time.perf_counter()
{body}
elapsed = (time.perf_counter() - started) * 1000
loaded = {{name: name in sys.modules for name in ("boto3", "pydantic")}}
print(json.dumps({{"ms": elapsed, "status": globals().get("status"), **loaded}}))
"""
INVOKE = """
import {module} as handler
from local_stack.lambda_context import LocalLambdaContext
event = json.load(open({event!r}))
status = handler.lambda_handler(event, LocalLambdaContext("bench", 6))["statusCode"]
"""


def build(folder: Path, *, bytecode: bool) -> dict[str, Path]:
    """Layer packages for this Python, and each function's code, as separate directories."""
    layer = folder / "layer" / "python"
    subprocess.run(
        [str(REPO_ROOT / ".tools/uv/bin/uv"), "pip", "install", "--quiet", "--no-deps",
         "--python", sys.executable, "--target", str(layer),
         "-r", str(REPO_ROOT / "layers/common/requirements.txt")],
        check=True,
    )  # fmt: skip
    shutil.copytree(REPO_ROOT / "layers/common/market_data", layer / "market_data")
    paths = {"layer": layer}
    for name, (code, _, _) in HANDLERS.items():
        target = folder / "functions" / name
        shutil.copytree(REPO_ROOT / code, target, ignore=shutil.ignore_patterns("__pycache__"))
        paths[name] = target
    support = folder / "support"
    shutil.copytree(
        REPO_ROOT / "local_stack", support / "local_stack", ignore=shutil.ignore_patterns("__pycache__")
    )
    paths["support"] = support
    if bytecode:  # as `make build` does after `sam build`
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(folder)],
            check=True,
        )
    return paths


def probe_once(body: str, pythonpath: list[Path], env: dict[str, str], *, bytecode: bool) -> dict[str, Any]:
    """One fresh process: imports and ``body`` timed inside it (interpreter start-up excluded)."""
    run_env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath)}
    if not bytecode:
        run_env["PYTHONDONTWRITEBYTECODE"] = "1"  # /var/task is read-only: nothing is cached
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(body=body)], env=run_env, capture_output=True, text=True,
        check=True, timeout=60,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    if (result["status"] or 0) >= 500:  # a cold start that fails measures nothing
        raise RuntimeError(f"first invocation answered {result['status']}")
    return result


def measure_round_robin(
    probes: dict[str, tuple[str, list[Path]]], env: dict[str, str], *, bytecode: bool
) -> dict[str, dict[str, Any]]:
    """RUNS fresh processes per probe, taken in turn (baseline, prices, ...; again), so that every
    probe sees the same machine: one probe's runs after another's let drift move the ratios."""
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in probes}
    for _ in range(RUNS):
        for name, (body, pythonpath) in probes.items():
            results[name].append(probe_once(body, pythonpath, env, bytecode=bytecode))
    return {
        name: {
            "median_ms": round(statistics.median(r["ms"] for r in runs), 1),
            "boto3": any(r["boto3"] for r in runs),
            "pydantic": any(r["pydantic"] for r in runs),
        }
        for name, runs in results.items()
    }


def run() -> list[Row]:
    rows = []
    with real_parts() as stack:
        env = configure_service(stack, ["BTC/USDT", "ETH/USDT"])
        from fetcher.deps import build_fetcher
        from fetcher.loop import LoopSummary, run_slot
        from market_data.clock import now_ms
        from market_data.config import load_settings

        container = build_fetcher(load_settings())  # a filled cache: the first request is a real read
        with quiet_stdout():
            run_slot(container, now_ms() // container.deps.settings.fetch_interval_ms, "bench", LoopSummary())
        for bytecode in (True, False):
            with tempfile.TemporaryDirectory() as tmp:
                paths = build(Path(tmp), bytecode=bytecode)
                layout = "make build: bytecode" if bytecode else "sam build alone: source only"
                probes = {"import redis": ("import redis", [paths["layer"]])}
                for name, (_, module, event) in HANDLERS.items():
                    body = (
                        INVOKE.format(module=module, event=str(REPO_ROOT / "events" / event))
                        if event else f"import {module}"
                    )  # fmt: skip
                    probes[name] = (body, [paths[name], paths["layer"], paths["support"]])
                measured = measure_round_robin(probes, env, bytecode=bytecode)
                base = measured.pop("import redis")
                rows.append(Row("cold start", f"import redis ({layout})", {"median_ms": base["median_ms"]}))
                for name, figures in measured.items():
                    ratio = figures["median_ms"] / base["median_ms"]
                    is_prices = name == "prices" and bytecode  # the target is for what ships
                    rows.append(
                        Row(
                            "cold start",
                            f"{name} ({layout})",
                            {**figures, "ratio": round(ratio, 2)},
                            limit=f"import redis {base['median_ms']} ms",
                            target=f"<= {TARGET_PRICES_RATIO} x, no boto3" if is_prices else "",
                            met=(ratio <= TARGET_PRICES_RATIO and not figures["boto3"])
                            if is_prices
                            else None,
                        )
                    )
    return rows
