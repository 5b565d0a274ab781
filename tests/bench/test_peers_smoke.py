"""The peer benchmark still runs end to end (--quick smoke runs of the router, and of direct
access and the router through every phase in the slow test), so the script does not rot between
full runs. Its figures are not checked: timing thresholds have no place in tests;
docs/benchmarks.md holds the measured numbers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIGURES = ("cpu_per_request.png", "cpu_per_chunk.png", "peak_rss.png", "added_latency.png",
           "balancing.png", "failover.png")


@pytest.fixture
def tools() -> None:
    for tool in ("wrk", "redis-server"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    pytest.importorskip("matplotlib")


def test_quick_cpu_run_measures_the_router_with_wrk(tools: None, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "scripts/bench/peers.py", "--quick", "--systems", "router",
         "--phases", "cpu", "--out", str(tmp_path), "--peers-venv", str(tmp_path / "no-peers")],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "peers.json").read_text())
    router = results["systems"]["router"]["cpu"]
    assert router["requests"] > 0 and router["streams"] > 0
    assert router["cpu_us_per_request"] > 0 and router["cpu_us_per_chunk"] > 0
    assert router["chunks_per_stream"] == 66  # role, 64 tokens, finish... and [DONE]
    assert (tmp_path / "cpu_per_request.png").stat().st_size > 0


@pytest.mark.slow
def test_quick_run_writes_every_figure_for_direct_and_router(tools: None, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "scripts/bench/peers.py", "--quick", "--systems", "direct,router",
         "--out", str(tmp_path), "--peers-venv", str(tmp_path / "no-peers")],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = json.loads((tmp_path / "peers.json").read_text())
    router, direct = results["systems"]["router"], results["systems"]["direct"]
    assert router["cpu"]["requests"] > 0 and router["cpu"]["cpu_us_per_request"] > 0
    assert router["cpu"]["cpu_us_per_chunk"] > 0 and router["cpu"]["peak_rss_mib"] > 0
    assert "cpu_us_per_request" not in direct["cpu"]  # no proxy process to measure
    assert 0 < router["failover"]["sent_after_kill"] < router["failover"]["requests"]
    assert router["latency"]["pairs"] > 0 and direct["latency"]["pairs"] > 0
    assert sum(router["balance"]["upstream_requests"]) > 0
    # The kill happened: a client alternating between the two simulators by itself hits the
    # dead one.
    assert direct["failover"]["errors"] > 0
    assert results["versions"]["wrk"]
    for figure in FIGURES:
        assert (tmp_path / figure).stat().st_size > 0, figure
    assert "flotilla router" in (tmp_path / "peers.md").read_text()


def test_missing_peers_are_skipped_with_how_to_install(tools: None, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "scripts/bench/peers.py", "--quick", "--systems", "sglang-router,litellm",
         "--phases", "cpu", "--out", str(tmp_path), "--no-plots",
         "--peers-venv", str(tmp_path / "no-peers"),
         "--sglang-router-bin", str(tmp_path / "absent"), "--litellm-bin",
         str(tmp_path / "absent")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "SKIP sglang-router" in done.stdout and "install_peers.sh" in done.stdout
    skipped = json.loads((tmp_path / "peers.json").read_text())["skipped"]
    assert set(skipped) == {"sglang-router", "litellm"}
