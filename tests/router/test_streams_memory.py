"""The router holds a couple of hundred concurrent streams with flat memory (a short run of
scripts/bench/router_streams.py: real router, simulators and Redis as processes). No timing
thresholds: the check is that resident memory does not grow while the streams are held."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT, child_env

SCRIPT = REPO_ROOT / "scripts" / "bench" / "router_streams.py"
STREAMS = 200


@pytest.mark.slow
def test_router_memory_stays_flat_while_holding_streams(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    out = tmp_path / "streams.json"
    subprocess.run([sys.executable, str(SCRIPT), "--streams", str(STREAMS), "--ramp", "2",
                    "--hold", "10", "--idle", "1", "--tail", "1", "--itl-ms", "250",
                    "--no-doc", "--json", str(out)],
                   check=True, timeout=240, env=child_env(), cwd=REPO_ROOT)
    result = json.loads(out.read_text())
    assert result["streams_reached"] == STREAMS, result["errors"]
    assert result["streams_completed"] == STREAMS and result["errors"] == {}
    hold = [s for s in result["samples"] if s["phase"] == "hold"]
    assert len(hold) >= 5 and all(s["open_streams"] == STREAMS for s in hold[1:])
    start = result["router_rss_hold_start_mib"]
    # Flat: what the streams cost is taken when they open, not while they run.
    assert max(s["router_rss_mib"] for s in hold) <= start * 1.15, hold
