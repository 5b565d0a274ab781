"""Request helpers shared by the API modules: bounded JSON bodies, bearer tokens, JSON replies.

Bodies are read up to a limit (a declared `content-length` over it is refused before reading), so
a client cannot make the control plane buffer megabytes; every failure is a `ControlPlaneError`
that `app.py` turns into an OpenAI-shaped response.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response

from control_plane.errors import BadRequest, PayloadTooLarge
from fleet.validation import ValidationError, parse

T = TypeVar("T")


async def read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadRequest("invalid content-length header") from None
        if size > max_bytes:
            raise PayloadTooLarge(f"request body is {size} bytes; the limit is {max_bytes}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLarge(f"request body exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, max_bytes: int, *, empty: Any = None) -> Any:
    """The decoded JSON body; an empty body gives `empty` when that is not None."""
    body = await read_body(request, max_bytes)
    if not body.strip():
        if empty is not None:
            return empty
        raise BadRequest("request body is empty; a JSON object is expected")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None


async def read_model(request: Request, cls: type[T], max_bytes: int, *,
                     allow_unknown: bool = False, empty: Any = None) -> T:
    data = await read_json(request, max_bytes, empty=empty)
    try:
        return parse(cls, data, allow_unknown=allow_unknown)
    except ValidationError as exc:
        raise BadRequest(exc.message, param=exc.param) from None


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, headers=headers,
                    media_type="application/json")
