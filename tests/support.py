"""Paths and small helpers the tests share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
# ../shared sits beside the clone, here and in CI.
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"
EVENTS = REPO_ROOT / "events"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())
