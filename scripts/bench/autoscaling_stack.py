"""The real stack for the autoscaling benchmark: `flotilla up` with every timing compressed.

One `flotilla up` process per policy run (router + control plane, embedded store, local
provider), started from this checkout (PYTHONPATH) on free loopback ports, its workers (agent +
simulator processes) in a directory of the run's own. Every interval, window, timeout and the
simulated boot are the production value (trace time) divided by the compression factor k:

    autoscaler decision period   10 s      at zero: 2 s
    scale-down window            300 s     3 consecutive periods (a count: not scaled)
    signal window / half-life    60 s / 15 s
    cold-demand window           30 s      router cold-start hold: 300 s
    machine boot + model load    `boot_s`  (plus the real start of two Python processes)
    scale to zero after          `scale_to_zero_after_s` idle
    drain timeout                120 s

Heartbeats, probes and the agent's engine poll (10 s / 10 s / 2 s in production) are floored at
`FLOOR_S` real seconds: below it, on a shared 2-core machine, a late heartbeat would expire a
healthy worker (3 missed heartbeats), which is noise the benchmark must not measure.

Stopping: SIGTERM to the `flotilla up` process (it drains and stops the workers it started); then
every agent PID recorded in the run's instance directories is checked (PID + start time) and
killed if it is still there. Nothing else is signalled.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
FLOOR_S = 0.5


@dataclass(frozen=True)
class SimulatedEngine:
    """The simulator every replica runs: a small continuous-batching engine."""
    max_num_seqs: int = 4
    ttft_ms: float = 120.0
    itl_ms: float = 15.0
    output_tokens: int = 24
    batch_slowdown: float = 1.0

    def args(self, seed: int) -> str:
        return (f"--max-num-seqs {self.max_num_seqs} --ttft-ms {self.ttft_ms:g} "
                f"--itl-ms {self.itl_ms:g} --output-tokens {self.output_tokens} "
                f"--batch-slowdown {self.batch_slowdown:g} --load-s 0 --seed {seed}")

    @property
    def full_batch_service_s(self) -> float:
        slowdown = 1 + self.batch_slowdown * (self.max_num_seqs - 1) / self.max_num_seqs
        return (self.ttft_ms + self.itl_ms * self.output_tokens) / 1000.0 * slowdown

    @property
    def capacity_rps(self) -> float:
        """Requests per second one replica completes with a full batch."""
        return self.max_num_seqs / self.full_batch_service_s


@dataclass(frozen=True)
class Timings:
    compression: float
    boot_s: float = 60.0  # trace seconds: machine boot + weights load (processes: on top)
    scale_to_zero_after_s: float = 300.0  # trace seconds

    def real(self, trace_s: float, floor: float = 0.05) -> float:
        return max(floor, trace_s / self.compression)

    def environment(self, policy: str, workdir: Path, engine: SimulatedEngine, seed: int
                    ) -> dict[str, str]:
        beat = self.real(10.0, FLOOR_S)
        poll = self.real(2.0, FLOOR_S)
        agent = (f"--heartbeat-interval-s {beat:g} --engine-poll-interval-s {poll:g} "
                 f"--metrics-window-s {self.real(60.0):g} --drain-settle-s 0 "
                 f"--drain-timeout-s {self.real(120.0, 2.0):g} --engine-stop-grace-s 2 "
                 f"--backoff-max-s 0.5")
        values: dict[str, float | str] = {
            "HEARTBEAT_INTERVAL_S": beat,
            "CONTROL_PLANE_PROBE_INTERVAL_S": beat,
            "CONTROL_PLANE_AUTOSCALE_POLICY": policy,
            "CONTROL_PLANE_AUTOSCALE_INTERVAL_S": self.real(10.0),
            "CONTROL_PLANE_AUTOSCALE_INTERVAL_AT_ZERO_S": self.real(2.0),
            "CONTROL_PLANE_SCALE_DOWN_WINDOW_S": self.real(300.0),
            "CONTROL_PLANE_SCALE_DOWN_PERIODS": "3",
            "CONTROL_PLANE_AUTOSCALE_SIGNAL_WINDOW_S": self.real(60.0),
            "CONTROL_PLANE_AUTOSCALE_SIGNAL_HALF_LIFE_S": self.real(15.0),
            "CONTROL_PLANE_COLD_DEMAND_WINDOW_S": self.real(30.0),
            "CONTROL_PLANE_DRAIN_TIMEOUT_S": self.real(120.0, 2.0),
            "CONTROL_PLANE_RECONCILE_INTERVAL_S": self.real(60.0),
            "CONTROL_PLANE_THROUGHPUT_SAMPLE_INTERVAL_S": 60.0,
            "CONTROL_PLANE_LOCAL_BOOT_DELAY_S": self.real(self.boot_s, 0.0),
            "CONTROL_PLANE_LOCAL_PRICES": "sim-gpu=1",  # $1/h: dollars are GPU-hours
            "CONTROL_PLANE_LOCAL_WORKDIR": str(workdir),
            "CONTROL_PLANE_LOCAL_TERMINATE_GRACE_S": 5.0,
            "CONTROL_PLANE_LOCAL_SIMULATOR_ARGS": engine.args(seed),
            "CONTROL_PLANE_LOCAL_AGENT_ARGS": agent,
            "CONTROL_PLANE_LOCAL_IMDS_URL": "",
            "ROUTER_COLD_START_WAIT_S": self.real(300.0),
            "ROUTER_REFRESH_PERIOD_S": 0.25,
            "ROUTER_REPORT_PERIOD_S": 0.1,
        }
        return {k: v if isinstance(v, str) else f"{v:g}" for k, v in values.items()}


def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """`flotilla up` in a process of its own; `admin` talks to its control plane."""

    def __init__(self, run_dir: Path, env: dict[str, str]) -> None:
        self.run_dir = run_dir
        self.router_port, self.cp_port = free_port(), free_port()
        self.admin_token = "bench-" + secrets.token_hex(16)
        self.env = {**os.environ, **env, "ADMIN_TOKEN": self.admin_token,
                    "PYTHONPATH": str(REPO), "LOG_LEVEL": "info"}
        self.process: subprocess.Popen[bytes] | None = None
        self.admin = httpx.AsyncClient(base_url=self.cp_url, timeout=10.0,
                                       headers={"authorization": f"Bearer {self.admin_token}"})

    @property
    def cp_url(self) -> str:
        return f"http://127.0.0.1:{self.cp_port}"

    @property
    def router_url(self) -> str:
        return f"http://127.0.0.1:{self.router_port}/v1"

    async def start(self, timeout_s: float = 60.0) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.run_dir / "flotilla-up.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flotilla", "up", "--no-demo", "--host", "127.0.0.1",
             "--router-port", str(self.router_port),
             "--control-plane-port", str(self.cp_port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
            cwd=str(REPO), start_new_session=True)
        log.close()
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"flotilla up exited: {self.log_tail()}")
            try:
                if (await self.admin.get("/v1/pools")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"flotilla up not ready: {self.log_tail()}")
            await asyncio.sleep(0.2)

    def log_tail(self) -> str:
        path = self.run_dir / "flotilla-up.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = await self.admin.request(method, path, **kwargs)
        if reply.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {reply.status_code} {reply.text}")
        return reply.json()

    async def stop(self) -> list[int]:
        """Stop `flotilla up` (and through it its workers); returns agent PIDs that had to be
        killed afterwards (should be none)."""
        await self.admin.aclose()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                await asyncio.to_thread(self.process.wait, 10)
        return _kill_leftover_agents(self.run_dir / "instances")


def _kill_leftover_agents(workdir: Path) -> list[int]:
    from control_plane.providers.processes import ProcessRef, descendants

    killed = []
    for state in workdir.glob("*/instance.json"):
        try:
            agent = json.loads(state.read_text()).get("agent") or {}
        except (OSError, ValueError):
            continue
        if not agent:
            continue
        ref = ProcessRef(int(agent["pid"]), int(agent["start_ticks"]))
        if ref.alive():
            for pid in [*descendants(ref.pid), ref.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            killed.append(ref.pid)
    return killed
