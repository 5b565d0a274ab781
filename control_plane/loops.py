"""Background loops as owned tasks: started in the lifespan, held by reference, cancelled and
awaited at shutdown. A loop body that raises is logged and the loop carries on.

Cancellation can be lost on Python 3.11: `asyncio.wait_for` returns the inner result when it
completes in the same loop iteration as the cancel (CPython gh-86296, fixed in 3.12), and
redis-py calls `wait_for` on every command it sends. A loop that simply carried on would then never
stop, so every loop checks `raise_if_cancelling()` after each await of library code, and
`OwnedTasks.aclose()` cancels again until its tasks are really done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger("flotilla.control_plane.loops")


async def periodic(name: str, interval_s: Callable[[], float] | float,
                   body: Callable[[], Awaitable[object]]) -> None:
    """Run `body` every `interval_s` seconds until cancelled, surviving its errors."""
    while True:
        try:
            await body()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; carrying on", name)
        raise_if_cancelling()
        await asyncio.sleep(interval_s() if callable(interval_s) else interval_s)


def raise_if_cancelling() -> None:
    """Honour a cancellation that library code swallowed (see the module docstring)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class OwnedTasks:
    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[Any]] = []

    def start(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(_report_crash)
        self._tasks.append(task)
        return task

    async def aclose(self) -> None:
        """Cancel every task (newest first) and wait for each to finish."""
        tasks, self._tasks = self._tasks, []
        pending = set(tasks)
        while pending:
            for task in reversed(tasks):
                if task in pending:
                    task.cancel()
            # Crashes were already logged by `_report_crash`; here only the waiting matters.
            _, pending = await asyncio.wait(pending, timeout=1.0)
            for task in pending:
                log.warning("task %s ignored its cancellation; cancelling it again",
                            task.get_name())


def _report_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s stopped: %r", task.get_name(), task.exception())
