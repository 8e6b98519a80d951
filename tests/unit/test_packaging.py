"""The layer ships the locked versions (requirements.txt cannot drift from uv.lock), compiled."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests.support import REPO_ROOT


def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    return {package["name"]: package["version"] for package in lock["package"] if "version" in package}


def layer_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "layers" / "common" / "requirements.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_every_layer_requirement_is_pinned_to_the_locked_version() -> None:
    locked, pins = locked_versions(), layer_pins()
    assert {"aws-lambda-powertools", "redis", "httpx", "pydantic", "msgspec", "orjson"} <= set(pins)
    assert {name: version for name, version in pins.items() if locked.get(name) != version} == {}


def test_the_layer_does_not_ship_what_the_runtime_provides_or_tests_need() -> None:
    provided_by_the_runtime = {"boto3", "botocore", "urllib3", "python-dateutil", "six"}
    assert not (provided_by_the_runtime | {"moto", "pytest"}) & set(layer_pins())


def test_the_build_ships_bytecode_for_the_runtime_that_needs_no_source_check() -> None:
    # Lambda's code directories are read-only: a module without bytecode in the package is
    # compiled again on every cold start. `make build` (which `make test` runs first) adds it.
    build = REPO_ROOT / ".aws-sam" / "build"
    if not build.is_dir():
        pytest.skip("no build to inspect: run `make build` (make test does)")
    sources = [path for path in build.rglob("*.py") if "__pycache__" not in path.parts]
    assert len(sources) > 100  # the layer's packages and the functions' code

    def bytecode(source: Path) -> Path:
        return source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"

    assert [str(source) for source in sources if not bytecode(source).exists()] == []
    # PEP 552 flags: hash-based (1) and not checked against the source (no 2): zip archives keep
    # file times only to two seconds, which would make a timestamp-checked .pyc look out of date.
    flags = {int.from_bytes(bytecode(source).read_bytes()[4:8], "little") for source in sources}
    assert flags == {1}
