"""The dashboard's files as served: no data in them, a strict policy, nothing but the listed files.
(The page's behaviour in a browser: test_dashboard.py.)"""

from __future__ import annotations

import re

from control_plane.api.dashboard import ASSETS, STATIC_DIR
from tests.control_plane.conftest import ADMIN_TOKEN, Running, enroll


async def test_the_page_carries_no_data_and_a_strict_policy(running: Running) -> None:
    worker_id, _ = await enroll(running, "i-1")
    page = await running.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert worker_id not in page.text and ADMIN_TOKEN not in page.text
    for name in ASSETS:
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        asset = await running.client.get(f"/dashboard/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
        assert asset.headers["content-security-policy"] == policy


async def test_only_the_listed_files_are_served(running: Running) -> None:
    for path in ("/dashboard/index.html", "/dashboard/..%2F..%2Fapp.py", "/dashboard/nope.js",
                 "/dashboard/"):
        reply = await running.client.get(path)
        assert reply.status_code == 404, path
        assert reply.json()["error"]["message"]


def test_the_scripts_never_turn_data_into_markup() -> None:
    scripts = sorted(STATIC_DIR.glob("*.js"))
    assert {p.name for p in scripts} == {n for n in ASSETS if n.endswith(".js")}
    for path in scripts:
        script = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                     "new Function", "console.", "localStorage", "document.cookie"):
            assert sink not in script, (path.name, sink)
    html = (STATIC_DIR / "index.html").read_text()
    assert "<script>" not in html and "style=" not in html  # nothing inline: the CSP forbids it
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # no CDN, nothing off-origin
    # Were the script not to run, a form submitted by hand must carry no token to a URL: the CSP
    # says form-action 'none', forms post, and no field has a name (unnamed fields are not sent).
    assert "<form" in html and not re.search(r"<form(?![^>]*method=\"post\")", html)
    assert not re.search(r"<(input|select|textarea)[^>]* name=", html)
