"""What may interrupt a request in flight: its client leaving, or an upstream timeout.

One `RequestGuard` per proxied request. It cancels the request's own task (the cheapest way to
interrupt whatever upstream read is pending: aiohttp closes the connection, and the engine sees
the request cancelled) and remembers why, so the code that catches the `CancelledError` can tell
a timeout (retry elsewhere), a departed client (stop, release everything) and a server shutdown
(propagate) apart - the same pattern as `asyncio.timeout`, with two differences that matter on
the hot path:

  - moving the deadline is free: `touch()` after every streamed chunk only stores a number; the
    single timer re-arms itself lazily when it fires early (one timer per idle period, not one
    per chunk);
  - the client watcher is one `receive()` task per request: after the body has been read, the
    ASGI server completes it only when the client disconnects (or the response is complete).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine
from typing import Any

CLIENT_GONE = "client_disconnected"
FIRST_BYTE = "first_byte_timeout"
IDLE = "idle_timeout"


class RequestGuard:
    __slots__ = ("_loop", "_task", "_deadline", "_handle", "_handle_at", "_phase", "_idle_s",
                 "fired", "_watcher", "_done")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._deadline = math.inf
        self._handle: asyncio.TimerHandle | None = None
        self._handle_at = math.inf
        self._phase = FIRST_BYTE
        self._idle_s = math.inf
        self.fired: str | None = None  # why the task was cancelled, until `consume()`
        self._watcher: asyncio.Task[Any] | None = None
        self._done = False

    # client disconnect ---------------------------------------------------------------------------
    def watch_client(self, receive: Callable[[], Coroutine[Any, Any, dict[str, Any]]]) -> None:
        """Cancel the request when the client disconnects (call after the body was read)."""
        self._watcher = self._loop.create_task(receive())
        self._watcher.add_done_callback(self._client_event)

    def _client_event(self, watcher: asyncio.Task[Any]) -> None:
        if self._done or watcher.cancelled():
            return
        if watcher.exception() is None and watcher.result().get("type") == "http.disconnect":
            self._fire(CLIENT_GONE)

    # timeouts ------------------------------------------------------------------------------------
    def first_byte(self, timeout_s: float) -> None:
        """From now, the upstream must start answering within `timeout_s`."""
        self._phase = FIRST_BYTE
        self._set_deadline(self._loop.time() + timeout_s)

    def idle(self, timeout_s: float) -> None:
        """From now, at most `timeout_s` between chunks (extend with `touch()`)."""
        self._phase = IDLE
        self._idle_s = timeout_s
        self._set_deadline(self._loop.time() + timeout_s)

    def touch(self) -> None:
        self._deadline = self._loop.time() + self._idle_s

    def last_activity(self) -> float:
        """Loop time of the last `idle()` or `touch()` (while a stream is being relayed)."""
        return self._deadline - self._idle_s

    def disarm(self) -> None:
        self._deadline = math.inf
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._handle_at = math.inf

    def _set_deadline(self, when: float) -> None:
        self._deadline = when
        if self._handle is not None and self._handle_at <= when:
            return  # the timer fires earlier and will re-arm itself lazily
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_at(when, self._on_timer)
        self._handle_at = when

    def _on_timer(self) -> None:
        self._handle = None
        self._handle_at = math.inf
        if self._deadline == math.inf or self._done:
            return
        if self._loop.time() < self._deadline:
            self._handle = self._loop.call_at(self._deadline, self._on_timer)
            self._handle_at = self._deadline
            return
        self._fire(self._phase)

    # cancelling and recovering -------------------------------------------------------------------
    def _fire(self, reason: str) -> None:
        if self.fired is not None or self._task is None or self._task.done():
            return
        self.fired = reason
        self._task.cancel()

    def consume(self) -> str | None:
        """After catching CancelledError: the guard's reason (and the cancel is undone), or None
        when the cancellation came from elsewhere (server shutdown) and must propagate."""
        reason = self.fired
        if reason is None or self._task is None:
            return None
        self.fired = None
        self._task.uncancel()
        return reason

    def close(self) -> None:
        """The request is over: stop the timer and the client watcher."""
        self._done = True
        self.disarm()
        if self._watcher is not None and not self._watcher.done():
            self._watcher.cancel()
