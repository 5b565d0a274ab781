"""Engine adapters, registered by name: `make_adapter("vllm", ...)`.

Every module of this package is imported here, so a new engine (sglang, llama.cpp) is one new file
defining `class XAdapter(EngineAdapter, name="x")`; nothing else changes.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from worker_agent.engines.base import (
    EngineAdapter,
    EngineSample,
    LaunchSpec,
    adapter_class,
    registered_names,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")


def engine_names() -> tuple[str, ...]:
    return registered_names()


def make_adapter(name: str, *args: Any, **kwargs: Any) -> EngineAdapter:
    return adapter_class(name)(*args, **kwargs)


__all__ = ["EngineAdapter", "EngineSample", "LaunchSpec", "engine_names", "make_adapter"]
