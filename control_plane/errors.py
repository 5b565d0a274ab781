"""The control plane's errors, mapped to OpenAI-shaped responses in one place (`app.py`).

    ControlPlaneError            status 500 unless a subclass says otherwise
     ├── BadRequest              400  malformed JSON, wrong types, unknown fields
     ├── Unauthorized            401  missing, unknown or revoked token
     ├── Forbidden               403  a token of another instance, refused URL, admin disabled
     ├── NotFound                404  unknown worker, key, instance
     ├── Conflict                409  worker id owned by another instance, model mismatch,
     │                                a pool still named by a route
     ├── Unprocessable           422  a route target naming a pool that does not exist
     ├── PayloadTooLarge         413  body over the limit
     └── StoreDown               503  the fleet store did not answer (from fleet.store errors)
"""

from __future__ import annotations


class ControlPlaneError(Exception):
    status = 500
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers
        if code is not None:
            self.code = code


class BadRequest(ControlPlaneError):
    status = 400


class Unauthorized(ControlPlaneError):
    status = 401


class Forbidden(ControlPlaneError):
    status = 403


class NotFound(ControlPlaneError):
    status = 404


class Conflict(ControlPlaneError):
    status = 409


class PayloadTooLarge(ControlPlaneError):
    status = 413


class StoreDown(ControlPlaneError):
    status = 503


class Unprocessable(ControlPlaneError):
    """422: well-formed input that contradicts the fleet (a route naming an unknown pool)."""

    status = 422
