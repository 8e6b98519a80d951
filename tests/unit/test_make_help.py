"""``make help`` names every target meant for people and every variable they can pass."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.support import REPO_ROOT

# What a user passes on make's command line (beside any setting of docs/configuration.md).
VARIABLES = (
    "PORT",
    "SIMULATOR_PORT",
    "ADMIN_TOKEN",
    "ARGS",
    "EVENT",
    "FUNCTION",
    "TIMEOUT",
    "SCENARIOS",
    "ENV",
)
# Options ARGS carries to the local stack and make invoke.
OPTIONS = ("--emf", "--json-logs", "--simulator", "--fresh")


def phony_targets() -> set[str]:
    """Every target a .PHONY line declares: the names people type, not files make builds."""
    text = (REPO_ROOT / "Makefile").read_text()
    return {name for line in re.findall(r"^\.PHONY:(.*)$", text, re.MULTILINE) for name in line.split()}


@pytest.fixture(scope="module")
def help_text() -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_help_names_every_phony_target(help_text: str) -> None:
    named = set(re.findall(r"make ([a-z][a-z0-9-]*)", help_text))
    missing = phony_targets() - named - {"help"}
    assert not missing, f"make help does not mention: {sorted(missing)}"


def test_make_help_names_every_variable_and_option(help_text: str) -> None:
    missing = [name for name in (*VARIABLES, *OPTIONS) if name not in help_text]
    assert not missing, f"make help does not mention: {missing}"


def test_every_variable_named_in_help_is_read_by_the_makefile_or_the_local_stack() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    local_stack = "".join(path.read_text() for path in (REPO_ROOT / "local_stack").glob("*.py"))
    unread = [name for name in VARIABLES if f"$({name})" not in makefile and f'"{name}"' not in local_stack]
    assert not unread, f"named in make help but read nowhere: {unread}"
