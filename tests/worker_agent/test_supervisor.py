"""Supervisor mode with real child processes: restart on death, stop with SIGTERM then SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

from tests.support.processes import REPO_ROOT, child_env
from worker_agent.backoff import Backoff
from worker_agent.metrics import AgentMetrics
from worker_agent.supervisor import EngineSupervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
STUBBORN = [sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)"]


def supervisor(argv: list[str], **kwargs) -> tuple[EngineSupervisor, AgentMetrics]:
    metrics = AgentMetrics()
    options = {"stop_grace_s": 5.0, "backoff": Backoff(0.05, 0.2), "metrics": metrics, **kwargs}
    return EngineSupervisor(argv, **options), metrics


async def wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_killed_engine_is_started_again_and_counted() -> None:
    sup, metrics = supervisor(SLEEPER)
    await sup.start()
    try:
        first = sup.pid
        assert first is not None and os.getpgid(first) == first  # its own process group
        os.kill(first, signal.SIGKILL)
        await wait_for(lambda: sup.restarts == 1 and sup.pid != first)
        assert metrics.engine_restarts._value.get() == 1
        assert sup.process is not None and sup.process.returncode is None
    finally:
        await sup.stop()
    assert sup.process is not None and sup.process.returncode == -signal.SIGTERM


async def test_an_engine_ignoring_sigterm_is_killed_after_the_grace_period() -> None:
    sup, _ = supervisor(STUBBORN, stop_grace_s=0.3)
    await sup.start()
    await asyncio.sleep(0.5)  # let it install its SIGTERM handler
    code = await sup.stop()
    assert code == -signal.SIGKILL


async def test_a_stopped_engine_is_not_restarted() -> None:
    sup, _ = supervisor(SLEEPER)
    await sup.start()
    await sup.stop()
    await asyncio.sleep(0.3)
    assert sup.restarts == 0


async def test_the_engine_dies_with_an_agent_killed_without_cleanup(tmp_path) -> None:
    # An "agent" process that supervises a sleeper and then is SIGKILLed: the kernel's
    # parent-death signal must take the engine down too.
    pid_file = tmp_path / "engine.pid"
    script = (
        "import asyncio, sys\n"
        "from worker_agent.supervisor import EngineSupervisor\n"
        "from worker_agent.backoff import Backoff\n"
        "from worker_agent.metrics import AgentMetrics\n"
        "async def main():\n"
        f"    s = EngineSupervisor({SLEEPER!r}, stop_grace_s=1, backoff=Backoff(1, 1),"
        " metrics=AgentMetrics())\n"
        "    await s.start()\n"
        f"    open({str(pid_file)!r}, 'w').write(str(s.pid))\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n")
    agent = await asyncio.create_subprocess_exec(sys.executable, "-c", script, env=child_env(),
                                                 cwd=str(REPO_ROOT))
    try:
        await wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
        engine_pid = int(pid_file.read_text())
        os.kill(agent.pid, signal.SIGKILL)
        await agent.wait()

        def gone() -> bool:
            try:
                os.kill(engine_pid, 0)
            except ProcessLookupError:
                return True
            # A zombie (dead, not yet reaped by init) counts as gone.
            with open(f"/proc/{engine_pid}/stat") as stat:
                return stat.read().split(")")[-1].split()[0] == "Z"

        await wait_for(gone)
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()
