"""One client request on its way through the router (state shared by proxy, failover, relay)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from router.auth import Principal
from router.edge import Timing
from router.guard import RequestGuard
from router.inbound import ClientRequest

if TYPE_CHECKING:
    from router.cache import Ticket

Send = Callable[[dict[str, Any]], Awaitable[None]]


class ClientGone(Exception):
    """The client disconnected: stop, release everything, send nothing more."""


@dataclass(slots=True)
class Call:
    request: ClientRequest
    request_id: str
    timing: Timing
    guard: RequestGuard
    send: Send
    principal: Principal | None
    arrived: float  # loop time at arrival (deadlines)
    # what happened, for metrics and logs
    status: int = 0
    target: str = "none"
    attempts: int = 0
    ttft_s: float | None = None
    choice: str | None = None  # the complexity choice on a route with an auto target
    resumed: bool = False  # the stream was resumed on another worker
    cache: Ticket | None = None  # store the answer in the response cache (a miss)
    extra_headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # on the response
