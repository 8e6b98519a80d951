"""The live prices page at ``/``: plain HTML, JS and CSS from ``page/``, no build step.

The files are read once per container. The page learns where the WebSocket API is from a meta tag
filled here (``STREAM_URL``; unset, the page uses its own host's ``/ws``, as the local stack serves
it), and its Content-Security-Policy allows exactly that stream and this origin.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from market_data.config import get_settings

PAGE_DIR = Path(__file__).parent / "page"
# Path -> (file, content type). The page's own routes: template.yaml routes each to this function.
PAGE_FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/view.js": ("view.js", "text/javascript; charset=utf-8"),
    "/stream.js": ("stream.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
STREAM_URL_MARKER = "{{STREAM_URL}}"
# The page names its script and style with their content's hash (?v=...), so they can be kept a
# day: a new deployment's page names new ones. The page itself is revalidated every time (its ETag
# makes that a 304), so a new deployment is picked up at once.
ASSET_VERSION_MARKERS = {
    "{{APP_JS_VERSION}}": "app.js", "{{VIEW_JS_VERSION}}": "view.js", "{{STREAM_JS_VERSION}}": "stream.js",
    "{{APP_CSS_VERSION}}": "app.css",
}  # fmt: skip
MAX_AGE_S = {path: 0 if path == "/" else 86_400 for path in PAGE_FILES}


@cache
def _file(name: str) -> str:
    return (PAGE_DIR / name).read_text(encoding="utf-8")


def _version(name: str) -> str:
    return hashlib.sha256(_file(name).encode()).hexdigest()[:12]


def _content_security_policy(stream_url: str | None, host: str) -> str:
    if stream_url:
        parts = urlsplit(stream_url)
        stream = f"{parts.scheme}://{parts.netloc}"
    else:  # the page's own host, in whichever scheme the page was loaded
        stream = f"ws://{host} wss://{host}" if host else "ws: wss:"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src 'self' {stream}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


@dataclass(frozen=True)
class PageFile:
    body: str
    headers: dict[str, str]  # its type, caching and security headers, its ETag
    etag: str


def page_file(path: str, host: str) -> PageFile | None:
    """The page file at ``path``, None when ``path`` is not one. ``host``: the request's, which the
    page's own stream is on when STREAM_URL is unset."""
    found = PAGE_FILES.get(path)
    if found is None:
        return None
    name, content_type = found
    body = _file(name)
    headers = {
        "Content-Type": content_type,
        "Cache-Control": f"public, max-age={MAX_AGE_S[path]}",
        "X-Content-Type-Options": "nosniff",
    }
    if path == "/":
        stream_url = get_settings().stream_url
        body = body.replace(STREAM_URL_MARKER, html.escape(stream_url or "", quote=True))
        for marker, asset in ASSET_VERSION_MARKERS.items():
            body = body.replace(marker, _version(asset))
        headers["Content-Security-Policy"] = _content_security_policy(stream_url, host)
        headers["Referrer-Policy"] = "no-referrer"
    etag = f'"{hashlib.sha256(body.encode()).hexdigest()[:16]}"'
    headers["ETag"] = etag
    return PageFile(body, headers, etag)
