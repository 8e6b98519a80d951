"""tools/sam.sh: dummy credentials for offline commands only; deploy runs as the caller's own
identity, and without one it says what to set. Real parts: the wrapper and the SAM CLI's boto3."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

SAM = REPO_ROOT / "tools" / "sam.sh"
pytestmark = pytest.mark.skipif(
    not (REPO_ROOT / ".tools" / "sam" / "bin" / "sam").exists(),
    reason="the SAM CLI is installed by make setup",
)


def run_sam(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    # A machine with no AWS identity: no AWS_* variables, an empty home, no instance role.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(home), AWS_EC2_METADATA_DISABLED="true", **extra)
    return subprocess.run(
        [str(SAM), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("command", ["deploy", "delete"])
def test_deploy_without_credentials_names_what_to_set_instead_of_signing_as_a_dummy(
    tmp_path: Path, command: str
) -> None:
    answer = run_sam(tmp_path, command, "--config-env", "dev")

    assert answer.returncode == 2, answer
    assert "no AWS credentials found" in answer.stderr
    assert "AWS_PROFILE" in answer.stderr and "AWS_ACCESS_KEY_ID" in answer.stderr


def test_deploy_with_a_profile_of_the_callers_own_goes_on_to_the_sam_cli(tmp_path: Path) -> None:
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text(
        "[mine]\naws_access_key_id = AKIAMINE\naws_secret_access_key = mine-secret\n"
    )

    answer = run_sam(tmp_path, "deploy", "--help", AWS_PROFILE="mine")

    assert answer.returncode == 0, answer.stderr
    assert "--config-env" in answer.stdout  # the SAM CLI's own deploy help


def test_offline_commands_need_no_aws_account(tmp_path: Path) -> None:
    answer = run_sam(tmp_path, "validate", "--template-file", str(REPO_ROOT / "template.yaml"))

    assert answer.returncode == 0, answer.stderr + answer.stdout
