"""What the local stack prints once it serves, beside its routes: the admin token and the WebSocket API."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from local_stack.admin_token import AdminToken
from local_stack.services import say
from local_stack.template import REPO_ROOT

if TYPE_CHECKING:
    from local_stack.websocket import LocalWebSocketApi


def admin_banner(token: AdminToken, base: str, pair: str) -> None:
    """Where the admin routes' token is, and the two admin calls as they can be pasted in a shell."""
    say(f"admin routes enabled: {token.describe()}")
    url = f"{base}/api/market-data/whitelist/{pair.replace('/', '-')}"
    header = f'-H "Authorization: Bearer {token.shell_value}"'
    say(f"  revoke:  curl -X DELETE {header} {url}")
    say(f"  approve: curl -X POST {header} {url}/approve")


def stream_banner(websocket: LocalWebSocketApi, base: str, pair: str) -> None:
    """The WebSocket endpoint, its routes' functions, and a first client to try."""
    url = f"ws{base.removeprefix('http')}{websocket.path}"
    targets = sorted({function.name for function in websocket.routes.values()})
    say(f"WebSocket: {url}  (routes {', '.join(sorted(websocket.routes))} -> {', '.join(targets)})")
    missing = sorted(
        {r.function.code_uri for r in websocket.api.routes if not (REPO_ROOT / r.function.code_uri).is_dir()}
    )
    if missing:
        say(f"  {', '.join(missing)} not there yet: connections are refused (502) until it is")
    say(f"  management API: POST, GET, DELETE {base}/@connections/{{id}}")
    say(f"  Lambda's Invoke API: POST {base}/2015-03-31/functions/{{name}}/invocations")
    subscribe = json.dumps({"action": "subscribe", "pairs": [pair]})
    say(f"try: .venv/bin/python -m websockets {url}   then send {subscribe}")
