"""The router's errors, and engine errors normalised to OpenAI's shape.

    RouterError                   root; carries the HTTP status and OpenAI error fields
     ├── RequestRejected          bad input, auth, allow-list, limits, size (4xx, no upstream call)
     ├── NoCapacity               no target can serve in time (503 + retry-after)
     └── UpstreamFailed           every attempt failed (502/503/504, x-should-retry: false)

    UpstreamError                 one attempt failed (internal; the failover loop retries it)
     ├── UpstreamConnectError     could not connect (refused, reset before a response)
     ├── UpstreamTimeout          connect, first byte or idle timeout
     ├── UpstreamStatusError      5xx status from the engine, with its normalised body
     └── UpstreamBroken           the response body broke off after headers

Engines do not all speak OpenAI's error shape: vLLM sends the HTTP status as an integer `code`,
TEI's `/v1/embeddings` sends `{"error": "...", "error_type": "..."}`. `normalise_error_body`
turns any of them (or plain text) into `{"error": {"message", "type", "param", "code"}}` with
`code` a string or null, so the official SDKs raise their usual exception classes.
"""

from __future__ import annotations

from typing import Any

import orjson

from fleet.errors import error_body, error_type


class RouterError(Exception):
    def __init__(self, status: int, message: str, *, type: str | None = None,  # noqa: A002
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or error_type(status)
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> bytes:
        return error_body(self.status, self.message, type=self.type, param=self.param,
                          code=self.code)


class RequestRejected(RouterError):
    """The client's request is refused before any upstream call."""


class NoCapacity(RouterError):
    """No target of the route had ready capacity within the cold-start wait."""


class UpstreamFailed(RouterError):
    """Every attempt failed; the client should not retry on top of the router's own retries."""


class UpstreamError(Exception):
    """One upstream attempt failed in a way the failover loop may retry."""

    reason = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UpstreamConnectError(UpstreamError):
    reason = "connect"


class UpstreamTimeout(UpstreamError):
    reason = "timeout"


class UpstreamBroken(UpstreamError):
    reason = "broken"


class UpstreamStatusError(UpstreamError):
    reason = "status"

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"upstream answered {status}")
        self.status = status
        self.body = body


def retry_after_headers(seconds: float) -> dict[str, str]:
    """`retry-after` (whole seconds, at least 1) and `retry-after-ms`, as openai-python reads."""
    ms = max(1, int(seconds * 1000))
    return {"retry-after": str(max(1, -(-ms // 1000))), "retry-after-ms": str(ms)}


def _as_code(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(int(value))
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if value is None:
        return None
    return orjson.dumps(value).decode()


def normalise_error_body(status: int, body: bytes) -> bytes:
    """An engine's error body in OpenAI's shape; already-conforming bodies are returned as is."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()[:2000]
        return error_body(status, text or f"upstream answered {status}")
    if isinstance(data, dict):
        inner = data.get("error")
        if isinstance(inner, dict):
            message = _text(inner.get("message")) or f"upstream answered {status}"
            kind = inner.get("type") if isinstance(inner.get("type"), str) else None
            param = inner.get("param") if isinstance(inner.get("param"), str) else None
            code = inner.get("code")
            if (isinstance(inner.get("message"), str) and isinstance(kind, str)
                    and (code is None or isinstance(code, str))
                    and (inner.get("param") is None or isinstance(inner.get("param"), str))):
                return body
            return error_body(status, message, type=kind, param=param, code=_as_code(code))
        if isinstance(inner, str):  # TEI: {"error": "...", "error_type": "Validation"}
            kind = data.get("error_type")
            return error_body(status, inner, code=kind.lower() if isinstance(kind, str) else None)
        for key in ("message", "detail"):  # vLLM's older shape, FastAPI's default 4xx shape
            if key in data:
                return error_body(status, _text(data[key]) or f"upstream answered {status}")
    return error_body(status, f"upstream answered {status}")
