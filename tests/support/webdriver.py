"""Headless Chromium driven over the W3C WebDriver protocol with httpx (no Selenium).

`chromedriver` (Debian `chromium-driver`) runs as a child process on a free loopback port; a
`Browser` is one WebDriver session in it. The protocol is a handful of JSON calls, and speaking it
with the async client the tests already use keeps the browser on the test's event loop beside the
in-process control plane (Selenium's client is synchronous and would need a thread).

    async with chromedriver() as driver, driver.session() as browser:
        await browser.get(url)
        button = await browser.find("button#sign-in")
        await browser.click(button)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from tests.support.ports import free_port

ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"  # the W3C spec's name for an element id
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")


def chromium_binary() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class WebDriverError(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"{error} ({status}): {message}")
        self.error = error


class Browser:
    def __init__(self, http: httpx.AsyncClient, session_id: str) -> None:
        self._http = http
        self.session_id = session_id

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        url = f"/session/{self.session_id}{path}"
        reply = await self._http.request(method, url, json=body if method == "POST" else None)
        data = reply.json()
        value = data.get("value")
        if reply.status_code != 200:
            error = value if isinstance(value, dict) else {}
            raise WebDriverError(reply.status_code, str(error.get("error")),
                                 str(error.get("message", ""))[:500])
        return value

    async def get(self, url: str) -> None:
        await self._call("POST", "/url", {"url": url})

    async def find(self, css: str) -> str:
        value = await self._call("POST", "/element", {"using": "css selector", "value": css})
        return str(value[ELEMENT_KEY])

    async def find_all(self, css: str) -> list[str]:
        value = await self._call("POST", "/elements", {"using": "css selector", "value": css})
        return [str(item[ELEMENT_KEY]) for item in value]

    async def click(self, element: str) -> None:
        await self._call("POST", f"/element/{element}/click", {})

    async def type(self, element: str, text: str) -> None:
        await self._call("POST", f"/element/{element}/value", {"text": text})

    async def clear(self, element: str) -> None:
        await self._call("POST", f"/element/{element}/clear", {})

    async def text(self, element: str) -> str:
        return str(await self._call("GET", f"/element/{element}/text"))

    async def run(self, script: str, *args: Any) -> Any:
        """Run `script` (a function body; `arguments[i]` are the args) in the page."""
        return await self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    async def wait_for(self, script: str, *args: Any, timeout: float = 10.0,
                       message: str = "condition") -> Any:
        """Poll a script until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.run(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{message} not seen in the page within {timeout} s")
            await asyncio.sleep(0.05)

    async def screenshot(self, path: Path) -> bytes:
        png = base64.b64decode(await self._call("GET", "/screenshot"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return png

    async def set_window_size(self, width: int, height: int) -> None:
        await self._call("POST", "/window/rect", {"width": width, "height": height})

    async def console(self) -> list[dict[str, Any]]:
        """The page's console messages since the last call (errors, CSP violations, ...):
        chromedriver's log endpoint, outside the W3C protocol."""
        return list(await self._call("POST", "/se/log", {"type": "browser"}))

    async def minimize(self) -> None:
        """Minimize the window: its page's `document.visibilityState` becomes "hidden"."""
        await self._call("POST", "/window/minimize", {})


class ChromeDriver:
    def __init__(self, http: httpx.AsyncClient, chromium: str) -> None:
        self._http = http
        self._chromium = chromium

    @contextlib.asynccontextmanager
    async def session(self, *, width: int = 1280, height: int = 900) -> AsyncIterator[Browser]:
        options = {"binary": self._chromium, "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--disable-extensions", "--disable-background-networking",
            "--hide-scrollbars", f"--window-size={width},{height}"]}
        reply = await self._http.post("/session", json={"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL"}}}})
        value = reply.json()["value"]
        if reply.status_code != 200:
            raise WebDriverError(reply.status_code, str(value.get("error")),
                                 str(value.get("message", ""))[:1000])
        browser = Browser(self._http, value["sessionId"])
        try:
            yield browser
        finally:
            with contextlib.suppress(httpx.HTTPError):
                await self._http.delete(f"/session/{browser.session_id}")


@contextlib.asynccontextmanager
async def chromedriver(chromedriver_path: str, chromium: str, log_path: Path
                       ) -> AsyncIterator[ChromeDriver]:
    """Start chromedriver on a free loopback port; stopped (by its PID) on exit."""
    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([chromedriver_path, f"--port={port}", "--allowed-ips=127.0.0.1"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as http:
            deadline = time.monotonic() + 15
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"chromedriver exited: {log_path.read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/status")).json()["value"].get("ready"):
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError("chromedriver did not become ready in 15 s")
                await asyncio.sleep(0.05)
            yield ChromeDriver(http, chromium)
    finally:
        # The group is chromedriver's own (a new session): it and the browsers it started.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
