"""The layer ships the locked versions: requirements.txt cannot drift from uv.lock."""

from __future__ import annotations

import re
import tomllib

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
    assert {"aws-lambda-powertools", "redis", "httpx", "pydantic", "pydantic-settings", "orjson"} <= set(pins)
    assert {name: version for name, version in pins.items() if locked.get(name) != version} == {}


def test_the_layer_does_not_ship_what_the_runtime_provides_or_tests_need() -> None:
    provided_by_the_runtime = {"boto3", "botocore", "urllib3", "python-dateutil", "six"}
    assert not (provided_by_the_runtime | {"moto", "pytest"}) & set(layer_pins())
