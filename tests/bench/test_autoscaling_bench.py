"""The autoscaling benchmark: its trace (fast), and a --quick run end to end (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench"
sys.path.insert(0, str(BENCH))

from autoscaling_trace import DEFAULT_PHASES, Phase, Trace  # noqa: E402


def test_the_trace_is_seeded_and_follows_its_phases() -> None:
    trace = Trace(DEFAULT_PHASES, compression=30.0, seed=7)
    arrivals = trace.arrivals()
    assert arrivals == Trace(DEFAULT_PHASES, compression=30.0, seed=7).arrivals()
    assert arrivals != Trace(DEFAULT_PHASES, compression=30.0, seed=8).arrivals()
    assert trace.real_s == pytest.approx(30 * 60 / 30.0)
    assert all(0 <= a.real_s < trace.real_s for a in arrivals)
    assert all(a.trace_s == pytest.approx(a.real_s * 30.0) for a in arrivals)
    counts = {p.name: sum(1 for a in arrivals if a.phase == p.name) for p in DEFAULT_PHASES}
    assert counts["idle"] == 0
    assert counts["spike"] > counts["plateau"] > counts["quiet"]


def test_rates_are_linear_within_a_phase() -> None:
    trace = Trace((Phase("ramp", 2, 0.0, 10.0), Phase("flat", 1, 3.0, 3.0)), 10.0, 0)
    assert trace.rate_at(60.0) == (5.0, "ramp")
    assert trace.rate_at(150.0) == (3.0, "flat")
    assert trace.peak_rps == 10.0


@pytest.mark.slow
def test_a_quick_run_measures_three_policies_and_leaves_nothing_behind(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCH / "autoscaling.py"), "--quick",
                           "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "autoscaling_quick.json").read_text())
    runs = {r["policy"]: r for r in result["runs"]}
    assert set(runs) == {"target_tracking", "static", "queue_depth_only"}
    for run in runs.values():
        assert run["requests"] == result["requests"] > 0
        assert run["leftover_pids"] == []
        assert run["gpu_hours"] > 0
        assert 0.0 <= run["slo_share"] <= 1.0
    static = runs["static"]
    assert static["max_live_replicas"] == result["timings"]["peak_replicas"]
    assert static["instances_launched"] == 0 and static["scale_ups"] == 0
    assert runs["target_tracking"]["instances_launched"] >= 1
    assert (tmp_path / "autoscaling_quick.png").stat().st_size > 0
    assert (tmp_path / "autoscaling_trace_quick.csv").read_text().startswith("index,")
