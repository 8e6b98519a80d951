"""Nothing under functions/prices_api reaches an exchange adapter or an HTTP client."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import REPO_ROOT

SOURCE_ROOTS = [REPO_ROOT / "layers" / "common", REPO_ROOT / "functions" / "prices_api"]
EXCHANGE_MODULES = {"fetcher", "httpx", "requests", "urllib3", "aiohttp"}


def module_file(name: str) -> Path | None:
    parts = name.split(".")
    for root in SOURCE_ROOTS:
        for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
            if candidate.exists():
                return candidate
    return None


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def reachable_from(package: str) -> set[str]:
    """Every module name imported, transitively through project files, from ``package``."""
    root = REPO_ROOT / "functions" / "prices_api" / package
    pending = [p for p in root.rglob("*.py")]
    seen_files: set[Path] = set()
    names: set[str] = set()
    while pending:
        path = pending.pop()
        if path in seen_files:
            continue
        seen_files.add(path)
        for name in imports_of(path):
            names.add(name)
            found = module_file(name)
            if found is not None:
                pending.append(found)
    return names


def test_prices_api_reaches_no_exchange_adapter() -> None:
    reached = reachable_from("prices_api")

    assert "market_data.cache" in reached  # the walk does follow project imports
    assert {name.split(".")[0] for name in reached} & EXCHANGE_MODULES == set()


def test_the_walk_would_catch_an_adapter_import(tmp_path: Path) -> None:
    fake = tmp_path / "m.py"
    fake.write_text("from fetcher.binance import BinanceClient\nimport httpx\n")
    assert {"fetcher.binance", "httpx"} <= imports_of(fake)
