"""Admin authentication: `Authorization: Bearer $ADMIN_TOKEN`, compared in constant time.

With no ADMIN_TOKEN configured the admin API is disabled (403 saying so) rather than open.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from control_plane.errors import ControlPlaneError, Forbidden, Unauthorized
from control_plane.http import bearer_token
from fleet.secrets import sha256_hex

Handler = Callable[[Request], Awaitable[Response]]


def check_admin(request: Request) -> None:
    cp = request.state.cp
    expected = cp.settings.admin_token
    if not expected:
        raise Forbidden("the admin API is disabled: set ADMIN_TOKEN to enable it",
                        code="admin_disabled")
    token = bearer_token(request)
    # Digests of equal length: the comparison time says nothing about the token's length.
    if token is None or not hmac.compare_digest(sha256_hex(token), sha256_hex(expected)):
        raise Unauthorized("invalid or missing admin token (Authorization: Bearer <ADMIN_TOKEN>)",
                           code="invalid_admin_token")


def admin(handler: Handler) -> Handler:
    """Decorate an admin endpoint: authenticated first, counted by result, and answered once the
    changes it queued (worker records, events) reached the store, so a client reads its writes."""

    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        cp = request.state.cp
        try:
            check_admin(request)
            response = await handler(request)
        except ControlPlaneError as exc:
            cp.metrics.admin_requests.labels(str(exc.status)).inc()
            raise
        await cp.writer.committed(cp.settings.store_write_wait_s)
        cp.metrics.admin_requests.labels(str(response.status_code)).inc()
        return response

    return guarded
