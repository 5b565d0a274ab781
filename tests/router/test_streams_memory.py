"""The router holds a couple of hundred concurrent streams without its memory running away (a
short run of scripts/bench/router_streams.py: real router, simulators and Redis as processes).
No timing thresholds: the check is on resident memory while the streams are held."""

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
                    "--hold", "10", "--open-slack", "5", "--idle", "1", "--tail", "1",
                    "--itl-ms", "250",
                    "--no-doc", "--json", str(out)],
                   check=True, timeout=240, env=child_env(), cwd=REPO_ROOT)
    result = json.loads(out.read_text())
    assert result["streams_reached"] == STREAMS, result["errors"]
    assert result["streams_completed"] == STREAMS and result["errors"] == {}
    hold = [s for s in result["samples"] if s["phase"] == "hold"]
    assert len(hold) >= 5 and all(s["open_streams"] == STREAMS for s in hold[1:])
    start = result["router_rss_hold_start_mib"]
    growth = max(s["router_rss_mib"] for s in hold) - start
    # Bounded relative to the start of the hold (these 200 short streams relay ~2.5 MiB) ...
    assert growth <= start * 0.15, hold
    # ... and no more than what the open streams' transcripts keep (router/transcript.py keeps
    # the SSE bytes relayed, up to 1 MiB per stream, until the stream ends): no other growth.
    assert growth <= 1.5 * result["mib_relayed_during_hold"] + 0.05 * start, hold
