"""``pip install ./clients/python`` gives the ``market_data_client`` package and the ``market-data``
command: the wheel the client's own pyproject.toml builds holds both, and nothing of the service."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

from tests.support import REPO_ROOT


def test_the_clients_wheel_has_the_package_the_command_and_nothing_else(tmp_path: Path) -> None:
    # The project's own uv (make setup installs it) builds as pip would: the client's build backend,
    # in an isolated environment from the package index.
    subprocess.run(
        [str(REPO_ROOT / ".tools" / "uv" / "bin" / "uv"), "build", "--quiet", "--wheel", "--out-dir",
         str(tmp_path), str(REPO_ROOT / "clients" / "python")],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    [wheel] = tmp_path.glob("market_data_client-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {name.split("/")[0] for name in names if not name.startswith("market_data_client-")}
    assert packages == {"market_data_client"}
    assert "market_data_client/py.typed" in names and "market_data_client/cli.py" in names
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "market-data = market_data_client.cli:main" in scripts
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Requires-Dist: httpx" in metadata and "Requires-Dist: websockets" in metadata
