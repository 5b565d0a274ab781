"""Chaos fixtures: the whole stack per scenario, and where each scenario writes its figures.

Figures go to `$FLOTILLA_CHAOS_RESULTS/<scenario>.json` (default `build/chaos/`);
`scripts/chaos_report.py` runs the suite and renders them into docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.stack import ChaosStack
from tests.support.processes import REPO_ROOT, ManagedProcess
from tests.support.redis_server import RedisServer


def results_dir() -> Path:
    return Path(os.environ.get("FLOTILLA_CHAOS_RESULTS", REPO_ROOT / "build" / "chaos"))


@pytest.fixture
async def chaos_stack(processes: Callable[..., ManagedProcess],
                      redis_factory: Callable[[], RedisServer]) -> AsyncIterator[ChaosStack]:
    stack = ChaosStack(processes, redis_factory())
    yield stack
    await stack.aclose()


@pytest.fixture
def record_figures(request: pytest.FixtureRequest) -> Callable[..., Path]:
    """`record_figures(title, fault, load_summary, **observations)` writes the scenario's JSON."""

    def write(title: str, fault: str, figures: dict[str, Any], **observations: Any) -> Path:
        name = request.node.name.removeprefix("test_")
        directory = results_dir()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.json"
        document = {"scenario": name, "title": title, "fault": fault, "figures": figures,
                    "observations": observations, "recorded_at": time.time(),
                    "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                               f"load average {os.getloadavg()[0]:.1f}"}
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        return path

    return write
