"""The dashboard: `/` and its two assets, static files that carry no data.

    GET /                        index.html
    GET /dashboard/{app.js, api.js, confirm.js, dom.js, panels.js, style.css}

The page reads the admin API with the token the operator types in (kept in the tab's
sessionStorage, sent as `Authorization: Bearer`), so serving it needs no authentication and
shows nothing by itself. Only the files listed here are served (no directory walking), each with
a strict Content-Security-Policy: scripts and styles from this origin only, no inline code, calls
only to this origin, no framing.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from control_plane.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parent.parent / "dashboard" / "static"

_JS = "text/javascript; charset=utf-8"
# app.js is the entry point (an ES module); the others are the modules it imports.
ASSETS = {"app.js": _JS, "api.js": _JS, "confirm.js": _JS, "dom.js": _JS, "panels.js": _JS,
          "style.css": "text/css; charset=utf-8"}

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    # Revalidate every load: a new release's page must not run with an old script.
    "cache-control": "no-cache",
}


async def index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8",
                        headers=SECURITY_HEADERS)


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"no such dashboard file: {name[:64]}")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=SECURITY_HEADERS)


ROUTES = [
    Route("/", index, methods=["GET"]),
    Route("/dashboard/{name}", asset, methods=["GET"]),
]
