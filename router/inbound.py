"""The client's request: read its body within the size limit, check what the router relies on.

The body is parsed once (orjson) and checked only as far as routing needs: a JSON object, a
non-empty string `model`, a boolean `stream`, an object `stream_options`, and the endpoint's
required input (`messages` list, `prompt`, `input`) with the right JSON type. Anything else is the
engine's business; the original bytes are forwarded unless the route rewrites `model`. Every
refusal here is an OpenAI-shaped 4xx with no upstream call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from router.errors import RequestRejected

# path -> (kind, path under /v1, required field, accepted JSON types, type description)
ENDPOINTS: dict[str, tuple[str, str, str, tuple[type, ...], str]] = {
    "/v1/chat/completions": ("chat", "/chat/completions", "messages", (list,), "an array"),
    "/v1/completions": ("completions", "/completions", "prompt", (str, list),
                        "a string or an array"),
    "/v1/embeddings": ("embeddings", "/embeddings", "input", (str, list), "a string or an array"),
}

_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
               int: "an integer", float: "a number", type(None): "null"}


@dataclass(slots=True)
class ClientRequest:
    kind: str  # chat | completions | embeddings
    path: str  # under /v1, e.g. /chat/completions
    body: bytes
    payload: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    _rewritten: dict[str, bytes] | None = None

    def body_for(self, model: str | None) -> bytes:
        """The bytes to forward: the original, or re-encoded with `model` replaced."""
        if model is None or model == self.model:
            return self.body
        if self._rewritten is None:
            self._rewritten = {}
        body = self._rewritten.get(model)
        if body is None:
            body = self._rewritten[model] = orjson.dumps({**self.payload, "model": model})
        return body


def _type_error(name: str, expected: str, value: Any) -> RequestRejected:
    got = _JSON_TYPES.get(type(value), type(value).__name__)
    return RequestRejected(400, f"Invalid type for '{name}': expected {expected}, but got {got} "
                                f"instead.", param=name, code="invalid_type")


def too_large(limit: int) -> RequestRejected:
    return RequestRejected(413, f"Request body too large: the limit is {limit} bytes.",
                           code="request_too_large")


async def read_body(scope: dict[str, Any], receive: Any, limit: int) -> bytes:
    """The whole request body, or 413 as soon as it exceeds `limit` (or declares more)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise RequestRejected(400, "Invalid Content-Length header.") from None
            if declared > limit:
                raise too_large(limit)
            break
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise too_large(limit)
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestRejected(400, "The client disconnected while sending the body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def parse_request(path: str, body: bytes) -> ClientRequest:
    kind, sub_path, required, accepted, described = ENDPOINTS[path]
    if not body:
        raise RequestRejected(400, "The request body is empty; expected a JSON object.")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestRejected(400, "We could not parse the JSON body of your request. The body "
                                   "must be valid JSON.", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise RequestRejected(400, "The request body must be a JSON object, got "
                                   f"{_JSON_TYPES.get(type(payload), 'a value')}.")
    model = payload.get("model")
    if model is None:
        raise RequestRejected(400, "You must provide a model parameter.", param="model",
                              code="missing_required_parameter")
    if not isinstance(model, str):
        raise _type_error("model", "a string", model)
    if not model or len(model) > 256:
        raise RequestRejected(400, "Invalid value for 'model': expected 1 to 256 characters.",
                              param="model", code="invalid_value")
    stream = payload.get("stream", False)
    if stream is None:
        stream = False
    elif not isinstance(stream, bool):
        raise _type_error("stream", "a boolean", stream)
    include_usage = False
    options = payload.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _type_error("stream_options", "an object", options)
        usage = options.get("include_usage", False)
        if usage is not None and not isinstance(usage, bool):
            raise _type_error("stream_options.include_usage", "a boolean", usage)
        include_usage = bool(usage)
    if required not in payload:
        raise RequestRejected(400, f"Missing required parameter: '{required}'.", param=required,
                              code="missing_required_parameter")
    value = payload[required]
    if not isinstance(value, accepted):
        raise _type_error(required, described, value)
    return ClientRequest(kind=kind, path=sub_path, body=body, payload=payload, model=model,
                         stream=stream, include_usage=include_usage)
