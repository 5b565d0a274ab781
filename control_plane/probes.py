"""The control plane's own readiness probe of each worker agent (`GET <agent_url>/readyz`).

A worker is ready only when its agent says `ready` AND this probe passed: the agent could be
wrong about itself, and the probe also proves the control plane (and so, usually, the routers on
the same network) can reach it. Probed: workers whose agent reports `ready` and that are not
draining, every `probe_interval_s`, plus at once when a heartbeat says a worker became ready.

Each probe has a whole-request timeout, probes run concurrently up to `probe_concurrency`, one
worker is never probed twice at the same time, and results are applied by the registry only if
the worker did not change since the probe started (its `generation`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx
import orjson

from control_plane.loops import raise_if_cancelling
from control_plane.metrics import ControlPlaneMetrics

log = logging.getLogger("flotilla.control_plane.probes")

MAX_BODY_BYTES = 4096  # of a /readyz reply: enough for the reason, never more


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    worker_id: str
    generation: int
    url: str


class ProbeSubject(Protocol):
    """What the prober needs from the worker registry."""

    def probe_targets(self, only: set[str] | None) -> list[ProbeTarget]: ...

    def apply_probe(self, worker_id: str, generation: int, passed: bool, error: str | None,
                    now: float) -> None: ...


class ProbeRequests:
    """Workers that should be probed soon (a heartbeat said they became ready)."""

    def __init__(self) -> None:
        self.wanted: set[str] = set()
        self.wake = asyncio.Event()

    def request(self, worker_id: str) -> None:
        self.wanted.add(worker_id)
        self.wake.set()

    def take(self) -> set[str]:
        wanted, self.wanted = self.wanted, set()
        self.wake.clear()
        return wanted


class ReadinessProber:
    def __init__(self, subject: ProbeSubject, requests: ProbeRequests, http: httpx.AsyncClient,
                 *, interval_s: float, timeout_s: float, concurrency: int,
                 metrics: ControlPlaneMetrics, clock: Callable[[], float] = time.time) -> None:
        self.subject = subject
        self.requests = requests
        self.http = http
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.metrics = metrics
        self.clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._inflight: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self.interval_s
        try:
            while True:
                try:
                    async with asyncio.timeout(max(0.0, next_sweep - loop.time())):
                        await self.requests.wake.wait()
                except TimeoutError:
                    pass
                wanted = self.requests.take()
                try:
                    if loop.time() >= next_sweep:
                        next_sweep = loop.time() + self.interval_s
                        self.start(self.subject.probe_targets(None))
                    elif wanted:
                        self.start(self.subject.probe_targets(wanted))
                except Exception:
                    log.exception("probe scheduling failed; carrying on")
                raise_if_cancelling()
        finally:
            tasks = list(self._inflight.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def start(self, targets: list[ProbeTarget]) -> None:
        for target in targets:
            if target.worker_id in self._inflight:
                continue
            task = asyncio.create_task(self._probe(target), name=f"probe-{target.worker_id}")
            self._inflight[target.worker_id] = task
            task.add_done_callback(lambda _, wid=target.worker_id: self._inflight.pop(wid, None))

    async def idle(self) -> None:
        """Wait for the probes in flight (tests)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight.values()), return_exceptions=True)

    async def _probe(self, target: ProbeTarget) -> None:
        async with self._slots:
            started = time.perf_counter()
            passed, error, reason = await self._get(target.url)
            self.metrics.probe_duration.observe(time.perf_counter() - started)
        self.metrics.probes.labels("passed" if passed else "failed").inc()
        if not passed:
            self.metrics.probe_failures.labels(reason).inc()
            log.debug("probe of %s failed: %s", target.worker_id, error)
        self.subject.apply_probe(target.worker_id, target.generation, passed, error, self.clock())

    async def _get(self, url: str) -> tuple[bool, str | None, str]:
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self.http.stream("GET", url) as response:
                    body = b""
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) >= MAX_BODY_BYTES:
                            break
        except TimeoutError:
            return False, f"probe of {url} timed out after {self.timeout_s:g} s", "timeout"
        except httpx.HTTPError as exc:
            return False, f"probe of {url} failed: {type(exc).__name__}", "connect"
        if response.status_code == 200:
            return True, None, "passed"
        return False, f"{url} answered {response.status_code}: {_reason(body)}", "status"


def _reason(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode(errors="replace").strip() or "no reason given"
    if isinstance(data, dict):
        for key in ("reason", "detail", "message", "status"):
            if isinstance(data.get(key), str):
                return data[key][:200]
        if isinstance(data.get("error"), dict) and isinstance(data["error"].get("message"), str):
            return data["error"]["message"][:200]
    return str(data)[:200]
