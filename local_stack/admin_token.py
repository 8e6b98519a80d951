"""The admin routes' bearer token on the local stack, where it stands in for IAM (see gateway.py).

``ADMIN_TOKEN`` when set; otherwise a token made once and kept in ``.local/admin-token`` (mode
0600, git-ignored), so the admin routes work from the first ``make demo`` and a second shell reads
the token with ``$(cat .local/admin-token)``. Never printed: the banner says where it is.
"""

from __future__ import annotations

import os
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path

from local_stack.environment import local_dir, shown_path

FILE_NAME = "admin-token"
MIN_LENGTH = 16  # as market_data.config requires of ADMIN_TOKEN


@dataclass(frozen=True)
class AdminToken:
    value: str
    source: str  # "ADMIN_TOKEN", or the file's path as the user would type it

    @property
    def from_environment(self) -> bool:
        return self.source == "ADMIN_TOKEN"

    @property
    def shell_value(self) -> str:
        """The token as a shell reads it, never its text: ``$ADMIN_TOKEN`` or ``$(cat <file>)``."""
        return "$ADMIN_TOKEN" if self.from_environment else f"$(cat {shlex.quote(self.source)})"

    def describe(self) -> str:
        if self.from_environment:
            return "bearer token from ADMIN_TOKEN"
        return f"bearer token in {self.source} (made on first use, kept for the next runs)"


def token_path() -> Path:
    return local_dir() / FILE_NAME


def token_file_problem() -> str | None:
    """What is wrong with a kept token the next run would use (checked before anything starts)."""
    if os.environ.get("ADMIN_TOKEN") is not None:
        return None  # the settings' check covers ADMIN_TOKEN itself
    path = token_path()
    if not path.is_file():
        return None
    try:
        text = path.read_text().strip()
    except OSError as exc:
        return f"{shown_path(path)}: cannot be read ({exc.strerror}); delete it to have a new token made"
    if len(text) < MIN_LENGTH or any(character.isspace() for character in text):
        return (
            f"{shown_path(path)}: the admin token must be one word of at least {MIN_LENGTH} characters "
            f"(it has {len(text)}); delete the file to have a new one made"
        )
    return None


def admin_token() -> AdminToken:
    """``ADMIN_TOKEN``, else the kept token, made now if there is none."""
    if os.environ.get("ADMIN_TOKEN") is not None:
        return AdminToken(os.environ["ADMIN_TOKEN"], "ADMIN_TOKEN")
    path = token_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        path.chmod(0o600)  # only its owner may read it, however it was made
    else:
        with os.fdopen(descriptor, "w") as stream:
            stream.write(secrets.token_hex(16) + "\n")
    return AdminToken(path.read_text().strip(), shown_path(path))
