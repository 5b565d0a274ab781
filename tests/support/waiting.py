"""Waiting in tests for something another process or task will do: poll, never sleep blindly."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def eventually(predicate: Callable[[], Any], *, timeout: float = 10.0,
                     message: str = "condition", interval: float = 0.05) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not reached within {timeout} s")
        await asyncio.sleep(interval)
