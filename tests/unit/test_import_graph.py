"""The import graph: the API functions never reach an exchange adapter or an HTTP client, and every
module keeps to the layering (handlers -> logic -> data access; the layer depends on no function)."""

from __future__ import annotations

import ast
from collections.abc import Callable
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


# --- the layering: handlers -> logic -> data access ----------------------------------------------

FUNCTIONS = {"fetcher", "prices_api", "whitelist", "stream", "broadcaster"}
HANDLER_MODULES = {
    "fetcher.handler",
    "prices_api.handler",
    "prices_api.routes",
    "whitelist.handler",
    "stream.handler",
    "broadcaster.handler",
}
# Who may speak to each client library: DynamoDB through market_data.store, API Gateway's
# management API and Lambda's Invoke API through market_data.push.
DATA_ACCESS = {
    "redis": ("market_data.cache",),
    "boto3": ("market_data.store", "market_data.push"),
    "botocore": ("market_data.store", "market_data.push"),
}


def runtime_imports(path: Path) -> set[str]:
    """What a module imports when it runs: ``if TYPE_CHECKING:`` blocks are left out."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules() -> dict[str, Path]:
    """Every module of the functions and the layer, by its dotted name."""
    roots = [REPO_ROOT / "layers" / "common", *(REPO_ROOT / "functions" / name for name in FUNCTIONS)]
    found = {}
    for root in roots:
        for path in root.rglob("*.py"):
            if ".aws-sam" in path.parts:
                continue
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def violations(rule: Callable[[str, str], str | None]) -> list[str]:
    """``rule(module, imported)`` says why an import breaks the layering, or None."""
    found = []
    for module, path in sorted(modules().items()):
        for imported in sorted(runtime_imports(path)):
            why = rule(module, imported)
            if why is not None:
                found.append(f"{module} imports {imported}: {why}")
    return found


def _top(name: str) -> str:
    return name.split(".")[0]


def layer_imports_no_function(module: str, imported: str) -> str | None:
    if _top(module) == "market_data" and _top(imported) in FUNCTIONS:
        return "the shared layer must not depend on a function"
    return None


def only_data_access_reaches_the_stores(module: str, imported: str) -> str | None:
    owners = DATA_ACCESS.get(_top(imported))
    if owners is not None and not any(module == owner or module.startswith(owner + ".") for owner in owners):
        return f"only {' and '.join(owners)} speak to {_top(imported)}; others catch the errors they raise"
    return None


def logic_never_imports_a_handler(module: str, imported: str) -> str | None:
    if imported in HANDLER_MODULES and module not in HANDLER_MODULES:
        return "logic is called by handlers, never the other way round"
    return None


def http_answers_are_decided_in_handlers(module: str, imported: str) -> str | None:
    answers = {"market_data.http", "market_data.http_routes"}
    if imported in answers and module not in HANDLER_MODULES | answers:
        return "HTTP statuses and bodies are decided by handlers only"
    return None


def adapters_never_import_the_tick(module: str, imported: str) -> str | None:
    inside = module.startswith("fetcher.exchanges")
    if inside and _top(imported) == "fetcher" and not imported.startswith("fetcher.exchanges"):
        return "an exchange knows nothing of the tick that uses it"
    return None


@pytest.mark.parametrize(
    "rule",
    [
        layer_imports_no_function,
        only_data_access_reaches_the_stores,
        logic_never_imports_a_handler,
        http_answers_are_decided_in_handlers,
        adapters_never_import_the_tick,
    ],
)
def test_the_layering_holds(rule: Callable[[str, str], str | None]) -> None:
    assert violations(rule) == []


def test_the_layering_rules_would_catch_each_break() -> None:
    assert layer_imports_no_function("market_data.cache", "fetcher.tick")
    assert only_data_access_reaches_the_stores("fetcher.persisting", "redis.exceptions")
    assert only_data_access_reaches_the_stores("prices_api.health", "botocore.exceptions")
    assert only_data_access_reaches_the_stores("market_data.cache.reads", "redis") is None
    assert logic_never_imports_a_handler("prices_api.prices", "prices_api.handler")
    assert http_answers_are_decided_in_handlers("whitelist.submissions", "market_data.http")
    assert adapters_never_import_the_tick("fetcher.exchanges.kraken", "fetcher.tick")
    assert adapters_never_import_the_tick("fetcher.exchanges.kraken", "fetcher.exchanges.base") is None
    assert "fetcher.exchanges.registry" in modules() and "market_data.cache.keys" in modules()
