"""Supervisor mode: the agent starts the engine, restarts it when it dies, stops it at the end.

The engine runs as a child in a process group of its own, so a Ctrl-C meant for the agent (which
drains first) does not kill the engine under in-flight requests, and stopping it reaches the
engine's own workers (vLLM starts one per GPU). On Linux the child also asks the kernel for
SIGTERM should the agent die without cleaning up (`PR_SET_PDEATHSIG`), so a killed agent never
leaves an orphan engine holding the GPUs.

    running ── exits on its own ──► log + flotilla_agent_engine_restarts_total ──► wait backoff
       ▲                                                                             │
       └──────────────────────────────── start again ◄───────────────────────────────┘
    stop(): SIGTERM to the engine's group, SIGKILL after ENGINE_STOP_GRACE_S; never restarted.

The backoff grows while the engine keeps dying quickly and starts over once a run lasted
`stable_after_s`. Only the process this object started is ever signalled, by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence

from worker_agent.backoff import Backoff
from worker_agent.errors import EngineError
from worker_agent.metrics import AgentMetrics

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def _child_setup() -> None:
    """Runs in the child between fork and exec: own process group, die with the parent."""
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class EngineSupervisor:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        stop_grace_s: float,
        backoff: Backoff,
        metrics: AgentMetrics,
        stable_after_s: float = 60.0,
        on_restart: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.argv = list(argv)
        self.stop_grace_s = stop_grace_s
        self.backoff = backoff
        self.metrics = metrics
        self.stable_after_s = stable_after_s
        self.on_restart = on_restart
        self.clock = clock
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._started_at = 0.0
        self._stopping = False
        self._watcher: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        """Start the engine and watch over it; EngineError if it cannot be executed at all."""
        try:
            await self._spawn()
        except OSError as exc:
            raise EngineError(f"cannot start the engine {self.argv[0]!r}: "
                              f"{exc.strerror or exc}") from None
        self._watcher = asyncio.create_task(self._watch(), name="engine-supervisor")

    async def _spawn(self) -> None:
        self.process = await asyncio.create_subprocess_exec(*self.argv, preexec_fn=_child_setup)
        self._started_at = self.clock()
        log.info("engine started (pid %d): %s", self.process.pid, " ".join(self.argv))

    async def _watch(self) -> None:
        while not self._stopping:
            assert self.process is not None
            code = await self.process.wait()
            if self._stopping:
                return
            ran_s = self.clock() - self._started_at
            if ran_s >= self.stable_after_s:
                self.backoff.reset()
            delay = self.backoff.next_delay()
            log.error("engine (pid %d) exited with %s after %.1f s; restarting in %.1f s",
                      self.process.pid, _describe(code), ran_s, delay)
            await asyncio.sleep(delay)
            while not self._stopping:
                try:
                    await self._spawn()
                    break
                except OSError as exc:
                    delay = self.backoff.next_delay()
                    log.error("cannot start the engine (%s); retrying in %.1f s", exc, delay)
                    await asyncio.sleep(delay)
            else:
                return
            self.restarts += 1
            self.metrics.engine_restarts.inc()
            if self.on_restart is not None:
                self.on_restart()

    async def stop(self) -> int | None:
        """Stop the engine for good: SIGTERM, then SIGKILL after the grace period (idempotent)."""
        if self._stopping and self._watcher is None and (
                self.process is None or self.process.returncode is not None):
            return self.process.returncode if self.process else None
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            log.info("stopping the engine (pid %d)", process.pid)
            self._signal(process, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=self.stop_grace_s)
            except TimeoutError:
                log.warning("engine (pid %d) still running after %.0f s; killing it",
                            process.pid, self.stop_grace_s)
                self._signal(process, signal.SIGKILL)
                await process.wait()
        log.info("engine stopped (%s)", _describe(process.returncode))
        return process.returncode

    @staticmethod
    def _signal(process: asyncio.subprocess.Process, signum: int) -> None:
        # Only while the engine is alive and unreaped does its PID (and group id) surely still
        # name the process we started; the group reaches the workers the engine spawned.
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)


def _describe(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"
