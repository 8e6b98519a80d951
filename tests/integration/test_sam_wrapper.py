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


# --- tools/deploy.sh: `make deploy ENV=...` -------------------------------------------------------

DEPLOY = REPO_ROOT / "tools" / "deploy.sh"
FAKE_SAM_CLI = """#!/usr/bin/env bash
# Records how it was called and as whom, in place of the SAM CLI (which would call AWS).
{
  printf '%s\\n' "$*"
  echo "AWS_PROFILE=${AWS_PROFILE:-}"
  echo "AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-}"
} > "$RECORD"
"""
GUIDED_ANSWERS = """
[staging.deploy.parameters]
parameter_overrides = "Environment=\\"staging\\" VpcId=\\"vpc-0a1b\\" PrivateSubnetIds=\\"subnet-1\\""
"""


def run_deploy(
    home: Path, env_name: str, config: Path, **extra: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    fake = home / "fake-sam"
    fake.write_text(FAKE_SAM_CLI)
    fake.chmod(0o755)
    record = home / "record"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        HOME=str(home), AWS_EC2_METADATA_DISABLED="true", SAM_CLI=str(fake), RECORD=str(record),
        SAMCONFIG=str(config), **extra,
    )  # fmt: skip
    answer = subprocess.run(
        [str(DEPLOY), env_name], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    return answer, record.read_text() if record.exists() else ""


@pytest.fixture
def profile_home(tmp_path: Path) -> Path:
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text(
        "[mine]\naws_access_key_id = AKIAMINE\naws_secret_access_key = mine-secret\n"
    )
    return tmp_path


def test_a_first_deploy_of_an_environment_is_guided_and_saves_under_that_environment(
    profile_home: Path,
) -> None:
    config = profile_home / "samconfig.toml"
    config.write_text((REPO_ROOT / "samconfig.toml").read_text())

    answer, record = run_deploy(profile_home, "prod", config, AWS_PROFILE="mine")

    assert answer.returncode == 0, answer.stderr
    called = record.splitlines()[0]
    assert called.startswith("deploy --guided --config-env prod ")  # answers saved under [prod]
    assert f"--config-file {config}" in called and "--region eu-west-1" in called
    assert "VpcId" in answer.stdout and "PrivateRouteTableIds" in answer.stdout  # how to answer


def test_a_later_deploy_reads_the_saved_answers_and_asks_nothing(profile_home: Path) -> None:
    config = profile_home / "samconfig.toml"
    config.write_text((REPO_ROOT / "samconfig.toml").read_text() + GUIDED_ANSWERS)

    staging, record = run_deploy(profile_home, "staging", config, AWS_PROFILE="mine")
    assert staging.returncode == 0, staging.stderr
    assert record.splitlines()[0] == f"deploy --config-env staging --config-file {config}"

    # and a second environment is its own first deploy
    _, record = run_deploy(profile_home, "qa", config, AWS_PROFILE="mine")
    assert record.splitlines()[0].startswith("deploy --guided --config-env qa ")
    assert "--stack-name market-data-qa" in record and "Environment=qa" in record


def test_deploy_runs_as_the_callers_own_identity_never_a_dummy_one(profile_home: Path) -> None:
    config = profile_home / "samconfig.toml"
    config.write_text((REPO_ROOT / "samconfig.toml").read_text() + GUIDED_ANSWERS)

    _, record = run_deploy(profile_home, "staging", config, AWS_PROFILE="mine")

    assert "AWS_PROFILE=mine" in record.splitlines()
    assert "AWS_ACCESS_KEY_ID=" in record.splitlines()  # unset: the profile signs, not "testing"


def test_deploy_without_credentials_stops_before_the_sam_cli(tmp_path: Path) -> None:
    config = tmp_path / "samconfig.toml"
    config.write_text((REPO_ROOT / "samconfig.toml").read_text())

    answer, record = run_deploy(tmp_path, "dev", config)

    assert answer.returncode == 2 and record == ""
    assert "no AWS credentials found" in answer.stderr


@pytest.mark.parametrize("name", ["", "Prod", "prod env", "x" * 21])
def test_a_bad_environment_name_is_refused_naming_it(profile_home: Path, name: str) -> None:
    answer, record = run_deploy(profile_home, name, REPO_ROOT / "samconfig.toml", AWS_PROFILE="mine")

    assert answer.returncode == 2 and record == ""
    assert f"ENV='{name}'" in answer.stderr
