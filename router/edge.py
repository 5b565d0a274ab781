"""Pure ASGI middleware on every response: `x-request-id` and `x-flotilla-overhead-ms`.

The request id is the client's `x-request-id` when it is a sane token (at most 128 characters of
letters, digits and `-_.:`), else a new random one; it is set in the logging context variable and
forwarded to the worker. The overhead is the time from arrival to the response headers minus the
time spent waiting on upstreams (the handler adds those waits to `Timing.upstream_s`): the
router's own cost, including auth, balancing, backoff and cold-start waits.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from fleet.logs import request_id_var

_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


class Timing:
    __slots__ = ("started", "upstream_s", "reported_s")

    def __init__(self, started: float) -> None:
        self.started = started
        self.upstream_s = 0.0
        self.reported_s: float | None = None  # the overhead sent in the response headers

    def overhead_s(self, now: float) -> float:
        return max(0.0, now - self.started - self.upstream_s)


class EdgeMiddleware:
    """`hot` maps exact paths to raw ASGI endpoints served without Starlette's routing and
    exception middleware (they catch nothing the proxy does not already turn into a response);
    any other method or path goes through the Starlette app."""

    def __init__(self, app: Any, hot: dict[str, Any] | None = None) -> None:
        self.app = app
        self.hot = hot or {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        timing = Timing(time.perf_counter())
        request_id = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if _SANE_ID.fullmatch(value):
                    request_id = value
                break
        if not request_id:
            request_id = os.urandom(12).hex().encode()
        scope["flotilla.timing"] = timing
        scope["flotilla.request_id"] = request_id.decode()
        token = request_id_var.set(scope["flotilla.request_id"])

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                timing.reported_s = timing.overhead_s(time.perf_counter())
                overhead_ms = timing.reported_s * 1000.0
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id))
                headers.append((b"x-flotilla-overhead-ms", b"%.3f" % overhead_ms))
                message = {**message, "headers": headers}
            await send(message)

        endpoint = self.hot.get(scope["path"]) if scope["method"] == "POST" else None
        try:
            await (endpoint or self.app)(scope, receive, send_with_headers)
        finally:
            request_id_var.reset(token)
