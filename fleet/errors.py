"""OpenAI-shaped error bodies, shared by every service's HTTP edge.

    {"error": {"message": "...", "type": "invalid_request_error", "param": "model", "code": null}}

`code` is a string or null, as OpenAI's own API sends it (vLLM sends the HTTP status as an integer;
the router normalises engine errors to this shape on the way out).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def error_payload(status: int, message: str, *, type: str | None = None,  # noqa: A002
                  param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type or error_type(status), "param": param,
                      "code": code}}


def error_body(status: int, message: str, **fields: Any) -> bytes:
    return orjson.dumps(error_payload(status, message, **fields))


def error_response(status: int, message: str, *, headers: dict[str, str] | None = None,
                   **fields: Any) -> Response:
    return Response(error_body(status, message, **fields), status_code=status,
                    headers=headers, media_type="application/json")
