"""Simulated GPU workers on this machine: one worker agent per replica, supervising a simulator.

Each replica ("instance") is a worker agent in supervisor mode whose engine is the simulator:

    python -m worker_agent --host H --port A \\
        --engine-cmd "python -m simulator --kind vllm|tei --model M --host H --port P <args>"

with the SPEC environment (INSTANCE_ID, PROVIDER_INSTANCE_ID, CONTROL_PLANE_URL, MODEL_ID, ENGINE,
ENGINE_URL, ADVERTISE_URL, AGENT_URL, IMDS_URL, WORKER_AUTH_TOKEN_FILE in the instance's own
directory). Supervisor mode keeps one process per replica for us to manage; the agent puts the
simulator in its own process group, restarts it if it dies, stops it after draining, and the kernel
stops it should the agent die (PR_SET_PDEATHSIG).

Lifecycle of an instance:

    launch ─► booting (boot_delay_s: a simulated machine boot) ─► running (agent alive)
    terminate ─► shutting-down: SIGTERM to the agent (it drains, deregisters, exits 0),
                 SIGKILL to it and its descendants after terminate_grace_s ─► gone
    agent exits on its own ─► gone (not listed; reconcile forgets the document)

Only processes this provider started are signalled, by PID checked against the start time it
recorded (processes.py). Each instance directory (`workdir/<instance_id>/`) keeps `instance.json`
(facts + the agent's PID and start time), the token file and `agent.log`, so a new provider object
on the same workdir (a restarted control plane) lists and can terminate what an earlier one left
running: nothing leaks across restarts.

Prices are fake and configurable (`prices`: $/h per instance type, default none = unknown) so the
spending cap and cost paths can be exercised locally. The type is the first of the pool's
`instance_types` within the price ceiling, else `default_instance_type`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from control_plane.providers.base import (
    CapacityProvider,
    Instance,
    LaunchAttempt,
    LaunchRequest,
    LaunchResult,
    Market,
    PriceCapExceeded,
    ProviderRejected,
)
from control_plane.providers.placement import eligible_slots
from control_plane.providers.processes import ProcessRef, descendants
from fleet.secrets import new_id
from simulator.settings import SimulatorSettings

log = logging.getLogger("flotilla.capacity.local")

STATE_FILE = "instance.json"


@dataclass(frozen=True)
class LocalProviderConfig:
    workdir: Path  # one directory per instance: state, token file, logs
    python: str = sys.executable
    host: str = "127.0.0.1"
    boot_delay_s: float = 0.0  # simulated machine boot before the processes start
    default_instance_type: str = "sim-gpu"
    prices: Mapping[str, float] = field(default_factory=dict)  # fake $/h per instance type
    market: Market = "spot"
    simulator_args: tuple[str, ...] = ()  # extra simulator flags for every replica
    pass_engine_args: bool = True  # give the pool's engine_args to the simulator
    agent_args: tuple[str, ...] = ()  # extra agent flags (short intervals in tests)
    agent_env: Mapping[str, str] = field(default_factory=dict)
    # A fake metadata service for Spot notices; empty disables the watcher. `{instance_id}` is
    # replaced, so one fake can serve each instance its own metadata under a path prefix.
    imds_url: str = ""
    terminate_grace_s: float = 60.0  # SIGTERM (drain) to SIGKILL
    pythonpath: str | None = None  # PYTHONPATH for the children (None: inherit)


@dataclass
class _Running:
    instance: Instance
    directory: Path
    agent: ProcessRef | None = None
    process: asyncio.subprocess.Process | None = None  # when this object started it
    boot: asyncio.Task[None] | None = None
    stopping: asyncio.Task[None] | None = None
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)


class LocalProvider(CapacityProvider, name="local"):
    def __init__(self, config: LocalProviderConfig, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self._instances: dict[str, _Running] = {}
        self._closed = False
        config.workdir.mkdir(parents=True, exist_ok=True)
        self._adopt_from_workdir()

    # launch -----------------------------------------------------------------------------------
    async def launch(self, request: LaunchRequest) -> LaunchResult:
        if self._closed:
            raise ProviderRejected("the local provider is closed")
        if request.count == 0:
            return LaunchResult(())
        types = request.instance_types or (self.config.default_instance_type,)
        prices: dict[tuple[str, str | None], float | None] = {
            (t, "local"): self.config.prices.get(t) for t in types}
        slots, skipped = eligible_slots(types, [("local", None)], self.config.market, prices,
                                        request.max_price_per_hour)
        if not slots:
            raise PriceCapExceeded(f"pool {request.pool}: every instance type is priced above "
                                   f"${request.max_price_per_hour}/h or unpriced", skipped)
        slot = slots[0]
        attempts = list(skipped)
        launched = []
        for _ in range(request.count):
            instance_id = new_id("inst")
            directory = self.config.workdir / instance_id
            directory.mkdir(parents=True)
            engine_port, agent_port = _free_port(self.config.host), _free_port(self.config.host)
            instance = Instance(
                instance_id=instance_id, provider="local",
                provider_instance_id=f"local-{instance_id.removeprefix('inst_')}",
                pool=request.pool, instance_type=slot.instance_type, zone="local",
                market=self.config.market, private_ip=self.config.host,
                launched_at=self._clock(), price_per_hour=slot.price_per_hour,
                model_id=request.model_id, state="booting",
                details={"engine": request.engine, "engine_port": engine_port,
                         "agent_port": agent_port, "dir": str(directory)})
            running = _Running(instance, directory)
            self._instances[instance_id] = running
            self._save(running)
            running.boot = asyncio.create_task(self._boot(running, request),
                                               name=f"local-boot-{instance_id}")
            launched.append(instance)
            attempts.append(LaunchAttempt(slot.instance_type, "local", slot.market, "launched"))
        return LaunchResult(tuple(launched), tuple(attempts))

    async def _boot(self, running: _Running, request: LaunchRequest) -> None:
        # The simulated boot ends early if the instance is terminated meanwhile; once the
        # processes are being started, that step runs to its end so no PID is ever lost.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(running.stop_requested.wait(), self.config.boot_delay_s)
        if running.stop_requested.is_set():
            return
        details = running.instance.details
        argv, env = self._agent_command(running, request, details["engine_port"],
                                        details["agent_port"])
        try:
            with open(running.directory / "agent.log", "ab") as logfile:
                running.process = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.DEVNULL, stdout=logfile,
                    stderr=asyncio.subprocess.STDOUT, env=env, cwd=str(running.directory),
                    start_new_session=True)
        except OSError as exc:
            log.error("local instance %s: cannot start the agent: %s",
                      running.instance.instance_id, exc)
            self._forget(running)
            return
        running.agent = ProcessRef.of(running.process.pid)
        running.instance = running.instance.replace(
            state="running", details={**details, "agent_pid": running.process.pid})
        self._save(running)
        log.info("local instance %s started: agent pid %d, engine port %d",
                 running.instance.instance_id, running.process.pid, details["engine_port"])

    def _agent_command(self, running: _Running, request: LaunchRequest, engine_port: int,
                       agent_port: int) -> tuple[list[str], dict[str, str]]:
        host = self.config.host
        engine_argv = [self.config.python, "-m", "simulator", "--kind", request.engine,
                       "--model", request.model_id, "--host", host, "--port", str(engine_port)]
        if self.config.pass_engine_args:
            kept, dropped = simulator_flags(request.engine_args)
            if dropped:
                log.info("pool %s: engine flags the simulator does not model are left out: %s",
                         request.pool, " ".join(dropped))
            engine_argv += kept
        engine_argv += list(self.config.simulator_args)
        instance = running.instance
        env = dict(os.environ)
        if self.config.pythonpath is not None:
            env["PYTHONPATH"] = self.config.pythonpath
        env.update({
            "INSTANCE_ID": instance.instance_id,
            "PROVIDER_INSTANCE_ID": instance.provider_instance_id,
            "CONTROL_PLANE_URL": request.control_plane_url,
            "MODEL_ID": request.model_id,
            "ENGINE": request.engine,
            "ENGINE_URL": f"http://{host}:{engine_port}",
            "ADVERTISE_URL": f"http://{host}:{engine_port}",
            "AGENT_URL": f"http://{host}:{agent_port}",
            "IMDS_URL": self.config.imds_url.replace("{instance_id}", instance.instance_id),
            "WORKER_AUTH_TOKEN_FILE": str(running.directory / "worker-token"),
        })
        env.pop("WORKER_AUTH_TOKEN", None)  # never inherit another worker's token
        if request.tensor_parallel_size:
            env["TENSOR_PARALLEL_SIZE"] = str(request.tensor_parallel_size)
        if request.gpu_memory_utilization is not None:
            env["GPU_MEMORY_UTILIZATION"] = f"{request.gpu_memory_utilization:g}"
        env.update(self.config.agent_env)
        argv = [self.config.python, "-m", "worker_agent", "--host", host,
                "--port", str(agent_port), "--engine-cmd", shlex.join(engine_argv),
                *self.config.agent_args]
        return argv, env

    # list and terminate -----------------------------------------------------------------------
    async def list_instances(self, pool: str | None = None) -> list[Instance]:
        self._reap()
        return [r.instance for r in self._instances.values()
                if pool is None or r.instance.pool == pool]

    async def terminate(self, instance_ids: Sequence[str]) -> list[str]:
        self._reap()
        done = []
        for instance_id in instance_ids:
            running = self._instances.get(instance_id)
            if running is None:
                continue
            done.append(instance_id)
            if running.stopping is None:
                running.instance = running.instance.replace(state="shutting-down")
                running.stopping = asyncio.create_task(
                    self._stop(running, self.config.terminate_grace_s),
                    name=f"local-stop-{instance_id}")
        return done

    async def wait_terminated(self, instance_ids: Sequence[str], timeout: float) -> None:
        """Wait until the named instances' processes are gone (for callers that must know)."""
        tasks = [r.stopping for i in instance_ids
                 if (r := self._instances.get(i)) is not None and r.stopping is not None]
        if tasks:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _stop(self, running: _Running, grace_s: float) -> None:
        try:
            running.stop_requested.set()
            if running.boot is not None:
                await asyncio.gather(running.boot, return_exceptions=True)
            agent = running.agent
            if agent is not None and agent.signal(signal.SIGTERM):
                await self._wait_gone(running, grace_s)
                if agent.alive():
                    log.warning("instance %s: agent did not exit within %.0fs; killing",
                                running.instance.instance_id, grace_s)
                    # Its engine is in another process group: collect it before the agent dies.
                    children = descendants(agent.pid)
                    agent.kill()
                    for child in children:
                        child.kill()
                    await self._wait_gone(running, 5.0)
        finally:
            self._forget(running)

    async def _wait_gone(self, running: _Running, timeout: float) -> None:
        agent = running.agent
        if running.process is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(running.process.wait()), timeout)
            return
        deadline = time.monotonic() + timeout
        while agent is not None and agent.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def _reap(self) -> None:
        """Drop instances whose agent exited on its own (drained, crashed)."""
        for running in list(self._instances.values()):
            if running.stopping is not None or running.agent is None:
                continue
            if running.process is not None and running.process.returncode is None:
                # asyncio has not collected its exit yet; forgetting the process now would drop
                # a transport still waiting for it (a ResourceWarning later). Next pass.
                continue
            if not running.agent.alive():
                log.info("local instance %s: agent exited", running.instance.instance_id)
                self._forget(running)

    def _forget(self, running: _Running) -> None:
        self._instances.pop(running.instance.instance_id, None)
        state = running.directory / STATE_FILE
        with contextlib.suppress(FileNotFoundError):
            state.rename(running.directory / "instance.gone.json")

    # prices, persistence, close ---------------------------------------------------------------
    async def price(self, instance_type: str, *, market: Market = "spot",
                    zone: str | None = None) -> float | None:
        return self.config.prices.get(instance_type)

    def _save(self, running: _Running) -> None:
        doc = running.instance.to_doc() | {"state": running.instance.state}
        if running.agent is not None:
            doc["agent"] = {"pid": running.agent.pid, "start_ticks": running.agent.start_ticks}
        tmp = running.directory / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(running.directory / STATE_FILE)

    def _adopt_from_workdir(self) -> None:
        """Take over instances an earlier provider object left running in this workdir."""
        for state in sorted(self.config.workdir.glob(f"*/{STATE_FILE}")):
            try:
                doc = json.loads(state.read_text())
                agent = doc.get("agent")
                ref = ProcessRef(int(agent["pid"]), int(agent["start_ticks"])) if agent else None
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("unreadable %s (%s): ignored", state, exc)
                continue
            if ref is None or not ref.alive():
                state.rename(state.with_name("instance.gone.json"))
                continue
            instance = Instance.from_doc(doc, state="running")
            self._instances[instance.instance_id] = _Running(instance, state.parent, agent=ref)
            log.info("adopted local instance %s (agent pid %d)", instance.instance_id, ref.pid)

    async def aclose(self) -> None:
        """Stop every instance: drain (SIGTERM) for up to the grace period, then SIGKILL."""
        if self._closed:
            return
        self._closed = True
        for running in list(self._instances.values()):
            if running.stopping is None:
                running.stopping = asyncio.create_task(
                    self._stop(running, self.config.terminate_grace_s))
        tasks = [r.stopping for r in self._instances.values() if r.stopping is not None]
        await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))


_RESERVED = frozenset({"--kind", "--model", "--host", "--port"})  # set by the provider


def simulator_flags(engine_args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split a pool's engine flags into those the simulator models and the rest.

    vLLM flags such as `--max-num-seqs 32` or `--max-model-len 8192` shape the simulator's
    latency model; flags it has no notion of (`--quantization awq`) would make it refuse to
    start, so they are left out, together with their value.
    """
    known = {f.metadata["option"].flag for f in dataclasses.fields(SimulatorSettings)
             if "option" in f.metadata and f.metadata["option"].flag} - _RESERVED
    kept: list[str] = []
    dropped: list[str] = []
    args = list(engine_args)
    i = 0
    while i < len(args):
        flag = args[i]
        name = flag.split("=", 1)[0]
        group = [flag]
        if flag.startswith("--") and "=" not in flag and i + 1 < len(args) \
                and not args[i + 1].startswith("--"):
            group.append(args[i + 1])
        (kept if name in known else dropped).extend(group)
        i += len(group)
    return kept, dropped


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
