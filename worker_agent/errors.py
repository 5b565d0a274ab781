"""The worker agent's errors: one root, mapped to log lines and readiness reasons at the edges.

    AgentError
    ├── EngineError                the engine did not answer as expected (reason is short text)
    ├── ControlPlaneError
    │   ├── ControlPlaneUnreachable    connect error, timeout, 5xx, unreadable reply: back off
    │   └── ControlPlaneRejected       a 4xx: `status` and the control plane's message
    ├── ImdsError                  the metadata service failed (a 404 is not one: "no notice")
    └── TokenFileError             the token file cannot be read, written or locked
"""

from __future__ import annotations


class AgentError(Exception):
    """Root of the worker agent's errors."""


class EngineError(AgentError):
    """The engine is down, not ready, or answered something the adapter cannot use."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status  # the engine's HTTP status, when it answered one


class ControlPlaneError(AgentError):
    """A call to the control plane failed."""


class ControlPlaneUnreachable(ControlPlaneError):
    """No usable answer (connection, timeout, 5xx, malformed body): worth retrying later."""


class ControlPlaneRejected(ControlPlaneError):
    """The control plane refused the call (4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class ImdsError(AgentError):
    """The instance metadata service answered with an unexpected status or was unreachable."""


class TokenFileError(AgentError):
    """The worker token file cannot be read, written or locked."""
