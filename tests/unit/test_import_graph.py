"""Nothing under functions/prices_api or functions/whitelist reaches an exchange adapter or an HTTP client."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

API_PACKAGES = ["prices_api", "whitelist"]
SOURCE_ROOTS = [REPO_ROOT / "layers" / "common", *(REPO_ROOT / "functions" / name for name in API_PACKAGES)]
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
    root = REPO_ROOT / "functions" / package / package
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


@pytest.mark.parametrize(
    ("package", "followed"), [("prices_api", "market_data.cache"), ("whitelist", "market_data.store")]
)
def test_api_functions_reach_no_exchange_adapter(package: str, followed: str) -> None:
    reached = reachable_from(package)

    assert followed in reached  # the walk does follow project imports
    assert {name.split(".")[0] for name in reached} & EXCHANGE_MODULES == set()


def test_the_walk_would_catch_an_adapter_import(tmp_path: Path) -> None:
    fake = tmp_path / "m.py"
    fake.write_text("from fetcher.exchanges.binance import BinanceClient\nimport httpx\n")
    assert {"fetcher.exchanges.binance", "httpx"} <= imports_of(fake)
