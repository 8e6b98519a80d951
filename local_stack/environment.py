"""What the functions see when run here, and the check of every setting before anything starts.

The functions' settings are checked by ``market_data.config``, as on AWS at cold start. Here the
check runs first, on the environment the functions would get with stand-in addresses for the local
servers, together with the local stack's own settings (its ports): one message names every
problem, and nothing has been started when it does.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local_stack.template import REPO_ROOT, function_definition, serverless_functions

DEFAULT_TABLE = "market-data-local"
# The caller events/whitelist_revoke.json and whitelist_approve.json are signed as (as API Gateway
# would put it in the event): ``make invoke`` admits it, so the sample admin events run as written.
SAMPLE_EVENTS_ADMIN = "arn:aws:iam::123456789012:user/market-data-admin"
# Where the local servers will be, for the check before they exist: well-formed, never contacted.
PLACEHOLDER_REDIS_URL = "redis://127.0.0.1:9/0"
PLACEHOLDER_HTTP_URL = "http://127.0.0.1:9"
BROADCASTER = "BroadcasterFunction"  # locally, Lambda's Invoke API knows a function by its logical id


def local_environment(
    *, redis_url: str, dynamodb_url: str, table_name: str, exchange_urls: Mapping[str, str],
    admins: list[str], api_url: str,
) -> dict[str, str]:  # fmt: skip
    """The variables pointing the functions at the local servers instead of AWS. ``api_url`` is the
    local HTTP API's address, where the WebSocket management API and Lambda's Invoke API are too."""
    return {
        "REDIS_URL": redis_url,
        "REDIS_CLUSTER": "false",
        "DYNAMODB_ENDPOINT_URL": dynamodb_url,
        "MARKET_DATA_TABLE_NAME": table_name,
        **exchange_urls,
        "ADMIN_PRINCIPALS": json.dumps(admins),
        "POWERTOOLS_SERVICE_NAME": "market-data-local",
        # The template's values are AWS's (the stream API's execute-api URL, the broadcaster's
        # deployed name): here the management API is on the local API's port, botocore sends the
        # functions' Lambda calls there (AWS_ENDPOINT_URL_LAMBDA), and a function's name is its id.
        "STREAM_MANAGEMENT_URL": api_url,
        "AWS_ENDPOINT_URL_LAMBDA": api_url,
        "BROADCASTER_FUNCTION_NAME": BROADCASTER,
    }


def function_environment(
    template: dict[str, Any], local: Mapping[str, str], functions: Iterable[str] | None = None
) -> dict[str, str]:
    """What the functions see: the template's literal values (of ``functions``, every function by
    default), then the local endpoints; anything already set in this shell wins, so every setting
    of docs/configuration.md can be tried locally."""
    merged: dict[str, str] = {}
    for logical_id in serverless_functions(template) if functions is None else functions:
        merged.update(function_definition(template, logical_id).environment)
    merged.update(local)
    return {name: value for name, value in merged.items() if name not in os.environ}


def use_function_code(template: dict[str, Any], functions: Iterable[str]) -> None:
    """Make the functions' code and the shared layer importable, as Lambda's task and layer
    directories are; and give boto3 a region and dummy credentials, never a real account."""
    for code_dir in {function_definition(template, name).code_uri for name in functions} | {"layers/common"}:
        if str(REPO_ROOT / code_dir) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT / code_dir))
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


@dataclass(frozen=True)
class PortSetting:
    name: str  # as the user sets it: PORT, SIMULATOR_PORT, --port
    text: str | None
    default: int
    allow_zero: bool = False  # 0: any free port

    def read(self) -> tuple[int, str | None]:
        """The port, or the default and the problem with the text."""
        if self.text is None or self.text.strip() == "":
            return self.default, None
        lowest = 0 if self.allow_zero else 1
        try:
            port = int(self.text.strip())
        except ValueError:
            port = -1
        if not lowest <= port <= 65535:
            return (
                self.default,
                f"{self.name}: expected a port number from {lowest} to 65535 (got {self.text!r})",
            )
        return port, None


def settings_problems(
    template: dict[str, Any], placeholders: Mapping[str, str], functions: Iterable[str]
) -> list[str]:
    """Every problem ``market_data.config`` finds in the environment the functions would get
    (with ``placeholders`` for the local servers), and, when the fetcher is among them, an exchange
    it cannot speak to. Needs the functions' code importable (``use_function_code``)."""
    from market_data.config import ConfigurationError, load_settings

    environ = {**os.environ, **function_environment(template, placeholders, functions)}
    problems = []
    endpoint = os.environ.get("DYNAMODB_ENDPOINT_URL")
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        problems.append(f"DYNAMODB_ENDPOINT_URL: must start with http:// or https:// (got {endpoint!r})")
    try:
        load_settings(environ)
    except ConfigurationError as exc:
        problems.extend(_each_problem(exc))
    if not any(problem.startswith("EXCHANGES:") for problem in problems):
        problems.extend(_unknown_exchanges(environ.get("EXCHANGES")))
    return problems


def _unknown_exchanges(text: str | None) -> list[str]:
    """Names the settings accept but the fetcher cannot speak to."""
    from market_data.config import ConfigurationError

    try:
        from fetcher.exchanges.registry import check_known
    except ImportError:  # the fetcher is not among the functions run: no exchange will be asked
        return []
    try:
        check_known(_exchange_names(text))
    except ConfigurationError as exc:
        return _each_problem(exc)
    return []


def _each_problem(error: Exception) -> list[str]:
    return str(error).removeprefix("invalid configuration: ").split("; ")


def _exchange_names(text: str | None) -> tuple[str, ...]:
    """EXCHANGES' names as the settings read them; none when it does not parse (the settings say so)."""
    try:
        names = json.loads(text) if text else []
    except ValueError:
        return ()
    if not isinstance(names, list):
        return ()
    return tuple(str(name).strip().lower() for name in names)


def report_problems(problems: list[str], say: Any) -> None:
    say("error: nothing was started; fix these settings and run it again:")
    for problem in problems:
        say(f"  {problem}")


def shown_path(path: Path) -> str:
    """``path`` as a user in this directory would type it: relative when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def local_dir() -> Path:
    """Where the local stack keeps what outlives one run (the admin token) or tells other commands
    (the running stack's addresses, for ``make invoke``): ``.local/`` in the clone, git-ignored;
    ``LOCAL_STACK_DIR`` moves it."""
    return Path(os.environ.get("LOCAL_STACK_DIR") or REPO_ROOT / ".local")
