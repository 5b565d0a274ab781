"""Background loops as owned tasks: started in the lifespan, held by reference, cancelled and
awaited at shutdown. A loop body that raises is logged and the loop carries on."""

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
        await asyncio.sleep(interval_s() if callable(interval_s) else interval_s)


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
        for task in reversed(tasks):
            task.cancel()
        # Crashes were already logged by `_report_crash`; here only the waiting matters.
        await asyncio.gather(*tasks, return_exceptions=True)


def _report_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s stopped: %r", task.get_name(), task.exception())
