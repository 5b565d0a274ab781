"""Pure ASGI middleware: every request gets a request id (the caller's `x-request-id`, if sane,
else a new one), visible in JSON logs through `fleet.logs.request_id_var` and echoed in the reply.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from fleet.logs import request_id_var

_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

Scope = dict[str, Any]


class RequestIdMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _SANE_ID.fullmatch(candidate):
                    request_id = candidate
                break
        request_id = request_id or secrets.token_hex(8)
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
