"""The throughput benchmark runs end to end and reports numbers (no thresholds: see the docs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT, child_env

SCRIPT = REPO_ROOT / "scripts" / "bench" / "simulator_throughput.py"


@pytest.mark.slow
def test_benchmark_script_measures_both_servers(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed")
    out = tmp_path / "results.json"
    subprocess.run([sys.executable, str(SCRIPT), "--duration", "1", "--connections", "8",
                    "--tokens", "8", "--json", str(out)], check=True, timeout=180,
                   env=child_env(), cwd=REPO_ROOT)
    results = json.loads(out.read_text())["results"]
    assert {(r["server"], r["scenario"]) for r in results} == {
        ("simulator", "whole"), ("simulator", "stream"),
        ("asgi-floor", "whole"), ("asgi-floor", "stream")}
    for result in results:
        assert result["requests"] > 0 and result["server_cpu_s"] > 0
        assert result["bad_responses"] == 0
    stream = next(r for r in results if (r["server"], r["scenario"]) == ("simulator", "stream"))
    assert stream["events_per_request"] == 8 + 3  # tokens + role, usage and [DONE] events
