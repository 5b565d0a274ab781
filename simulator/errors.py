"""The simulator's errors, and the bodies each imitated engine answers them with.

    SimulatorError
     ├── RequestError        bad input or an injected fault, answered with an HTTP status
     └── ClientDisconnected  the client went away while we were answering

The body shapes are the engines' own, not the router's (the router normalises them):

- vLLM: `{"error": {"message", "type", "param", "code"}}` with `code` the HTTP status as an int;
- TEI native routes (`/embed`): flat `{"error": "...", "error_type": "Validation"}`;
- TEI's OpenAI route (`/v1/embeddings`): flat `{"message": "...", "code": 413, "type": "..."}`.
"""

from __future__ import annotations

import orjson

_VLLM_TYPES = {
    400: "BadRequestError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    413: "BadRequestError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}

# TEI's ErrorType variants, serialised by serde with their Rust names.
_TEI_TYPES = {
    400: "Validation",
    413: "Validation",
    422: "Validation",
    429: "Overloaded",
    500: "Backend",
    503: "Unhealthy",
}


class SimulatorError(Exception):
    """Root of the simulator's own errors."""


class RequestError(SimulatorError):
    def __init__(self, status: int, message: str, *, param: str | None = None,
                 error_type: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.error_type = error_type


class ClientDisconnected(SimulatorError):
    """The connection closed before the response was complete."""


def vllm_error_body(error: RequestError) -> bytes:
    return orjson.dumps({"error": {
        "message": error.message,
        "type": error.error_type or _VLLM_TYPES.get(error.status, "BadRequestError"),
        "param": error.param,
        "code": error.status,
    }})


def tei_error_body(error: RequestError) -> bytes:
    return orjson.dumps({
        "error": error.message,
        "error_type": error.error_type or _TEI_TYPES.get(error.status, "Backend"),
    })


def tei_openai_error_body(error: RequestError) -> bytes:
    return orjson.dumps({
        "message": error.message,
        "code": error.status,
        "type": error.error_type or _TEI_TYPES.get(error.status, "Backend"),
    })
