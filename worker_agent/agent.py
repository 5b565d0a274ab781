"""The agent: composes the engine monitor, enrollment and heartbeats, the Spot watcher, the drain
and (in supervisor mode) the engine process; owns their tasks and resources.

    Agent(settings)            builds nothing that needs a loop; `drain.finished` is the exit signal
    async with agent:          http client, NVML, supervised engine, background tasks
        monitor.run            health / models / warm-up / metrics every ENGINE_POLL_INTERVAL_S
        heartbeat.run          register + heartbeat (only with CONTROL_PLANE_URL)
        spot_watcher.run       IMDSv2 notices (only with IMDS_URL)
    on exit (reverse order):   cancel tasks, stop the drain, stop the engine, close NVML and http
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import signal
import time
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlsplit

import httpx

from fleet.schemas import DrainReason, Heartbeat, RegisterRequest
from fleet.settings import SettingsError
from fleet.validation import ValidationError, parse
from flotilla import __version__
from worker_agent.backoff import Backoff
from worker_agent.control_plane_client import ControlPlaneClient
from worker_agent.drain import Drain, DrainController
from worker_agent.engines import EngineAdapter, LaunchSpec, make_adapter
from worker_agent.enrollment import Enrollment
from worker_agent.errors import ControlPlaneError
from worker_agent.gpu import Gpus, mean_utilization
from worker_agent.heartbeat import HeartbeatLoop
from worker_agent.imds import ImdsClient, SpotWatcher
from worker_agent.metrics import AgentMetrics, AgentSnapshot
from worker_agent.monitor import EngineMonitor
from worker_agent.settings import AgentSettings
from worker_agent.signals import EngineSignals, SignalWindow
from worker_agent.supervisor import EngineSupervisor
from worker_agent.tokens import TokenFile

log = logging.getLogger(__name__)

# RegisterRequest field -> the setting that feeds it, to name the culprit of a bad value.
_SOURCES = {"instance_id": "INSTANCE_ID", "worker_id": "WORKER_ID", "model_id": "MODEL_ID",
            "provider_instance_id": "PROVIDER_INSTANCE_ID", "url": "ADVERTISE_URL",
            "agent_url": "AGENT_URL"}


def register_request(settings: AgentSettings) -> RegisterRequest:
    """What the agent tells the control plane about itself, checked against the wire schema."""
    data: dict[str, Any] = {
        "instance_id": settings.instance_id, "model_id": settings.model_id,
        "url": settings.advertise_url, "agent_url": settings.agent_url,
        "worker_id": settings.worker_id, "provider_instance_id": settings.provider_instance_id,
        "engine": settings.engine, "tensor_parallel_size": settings.tensor_parallel_size,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
        "agent_version": __version__,
    }
    try:
        return parse(RegisterRequest, {k: v for k, v in data.items() if v is not None})
    except ValidationError as exc:
        source = _SOURCES.get(exc.param or "", exc.param)
        raise SettingsError(f"{source}: {exc.message}") from None


def engine_argv(settings: AgentSettings, adapter: EngineAdapter) -> list[str]:
    if settings.engine_cmd:
        return shlex.split(settings.engine_cmd)
    engine = urlsplit(settings.engine_url)
    advertised = urlsplit(settings.advertise_url or settings.engine_url)
    # Listen where the router will call: all interfaces unless both URLs name the same host.
    host = engine.hostname if engine.hostname == advertised.hostname else "0.0.0.0"
    port = engine.port or (443 if engine.scheme == "https" else 80)
    return adapter.command(LaunchSpec(settings.model_id, host or "0.0.0.0", port,
                                      settings.tensor_parallel_size,
                                      settings.gpu_memory_utilization))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else min(3_600_000.0, seconds * 1000.0)


def _fraction(value: float | None) -> float | None:
    return None if value is None else min(1.0, max(0.0, value))


class Agent:
    def __init__(self, settings: AgentSettings, *, metrics: AgentMetrics | None = None,
                 nvml: Any | None = None) -> None:
        if not settings.instance_id:
            raise SettingsError("INSTANCE_ID is required (or run on EC2 with IMDS_URL set)")
        self.settings = settings
        self.metrics = metrics or AgentMetrics()
        self.registration = register_request(settings)
        self._nvml = nvml
        self.drain = DrainController(
            announce=self._announce_drain, in_flight=self._in_flight, finish=self._finish_drain,
            timeout_s=settings.drain_timeout_s, deadline_margin_s=settings.drain_deadline_margin_s,
            settle_s=settings.drain_settle_s, poll_interval_s=settings.engine_poll_interval_s,
            on_start=lambda d: self.metrics.drains.labels(d.reason).inc(),
        )
        self.monitor: EngineMonitor | None = None
        self.enrollment: Enrollment | None = None
        self.heartbeat: HeartbeatLoop | None = None
        self.supervisor: EngineSupervisor | None = None
        self._client: ControlPlaneClient | None = None
        self._tasks: dict[str, Any] = {}
        self._stack: AsyncExitStack | None = None
        self.metrics.watch(self.snapshot)

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Agent:
        s = self.settings
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            http = httpx.AsyncClient(timeout=s.engine_timeout_s, trust_env=False)
            stack.push_async_callback(http.aclose)
            adapter = make_adapter(s.engine, s.engine_url, s.model_id, http,
                                   timeout_s=s.engine_timeout_s,
                                   warmup_timeout_s=s.warmup_timeout_s)
            gpus = Gpus.open(self._nvml)
            if gpus is not None:
                stack.callback(gpus.close)
            self.monitor = EngineMonitor(adapter, window=SignalWindow(s.metrics_window_s),
                                         metrics=self.metrics, gpus=gpus)
            stack.push_async_callback(self.drain.aclose)
            if s.supervised:
                self.supervisor = EngineSupervisor(
                    engine_argv(s, adapter), stop_grace_s=s.engine_stop_grace_s,
                    backoff=Backoff(s.engine_restart_backoff_s,
                                    max(s.engine_restart_backoff_s, 60.0)),
                    metrics=self.metrics, on_restart=self.monitor.forget)
                await self.supervisor.start()
                stack.push_async_callback(self.supervisor.stop)
            self._tasks["monitor"] = asyncio.create_task(
                self.monitor.run(s.engine_poll_interval_s), name="engine-monitor")
            if s.control_plane_url:
                self._start_enrollment(http)
            else:
                log.warning("CONTROL_PLANE_URL is not set: this agent will not enroll")
            if s.imds_url:
                self._start_spot_watcher(http)
            stack.push_async_callback(self._cancel_tasks)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        log.info("agent up: engine %s at %s, model %s, instance %s%s", s.engine, s.engine_url,
                 s.model_id, s.instance_id, " (supervised)" if self.supervisor else "")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    def _start_enrollment(self, http: httpx.AsyncClient) -> None:
        s = self.settings
        assert s.control_plane_url is not None
        self._client = ControlPlaneClient(s.control_plane_url, http,
                                          timeout_s=s.control_plane_timeout_s)
        self.enrollment = Enrollment(
            self.registration, self._client, token=s.worker_auth_token,
            token_file=TokenFile(s.worker_auth_token_file) if s.worker_auth_token_file else None)
        base = min(1.0, s.heartbeat_interval_s / 2)
        self.heartbeat = HeartbeatLoop(
            self.enrollment, self._client, build=self.build_heartbeat,
            on_drain_requested=lambda: self.request_drain("control_plane"),
            interval_s=s.heartbeat_interval_s, backoff=Backoff(base, max(base, s.backoff_max_s)),
            metrics=self.metrics)
        self._tasks["heartbeat"] = asyncio.create_task(self.heartbeat.run(), name="heartbeat")

    def _start_spot_watcher(self, http: httpx.AsyncClient) -> None:
        s = self.settings
        assert s.imds_url is not None
        watcher = SpotWatcher(
            ImdsClient(s.imds_url, http, token_ttl_s=s.imds_token_ttl_s),
            on_notice=self._on_spot_notice, interval_s=s.imds_poll_interval_s,
            backoff=Backoff(s.imds_poll_interval_s, max(s.imds_poll_interval_s, 60.0)),
            on_seen=lambda kind: self.metrics.spot_notices.labels(kind).inc())
        self._tasks["spot"] = asyncio.create_task(watcher.run(), name="spot-watcher")

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- drain -------------------------------------------------------------------------------

    def request_drain(self, reason: DrainReason, deadline: float | None = None) -> None:
        self.drain.request(reason, deadline)

    def _on_spot_notice(self, kind: str, deadline: float | None) -> None:
        self.request_drain("spot_interruption" if kind == "spot_interruption" else "rebalance",
                           deadline)

    def on_signal(self, signum: int) -> None:
        """SIGTERM/SIGINT: drain; the same signal again: stop waiting and finish now."""
        if self._stack is None:
            log.warning("%s before start-up finished: exiting", signal.Signals(signum).name)
            self.drain.finished.set()
        elif self.drain.active:
            self.drain.hurry()
        else:
            self.request_drain("sigterm")

    def _announce_drain(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.wake()

    async def _in_flight(self) -> int | None:
        assert self.monitor is not None
        return await self.monitor.in_flight()

    async def _finish_drain(self, drain: Drain) -> None:
        # Heartbeats stop before deregistering: one arriving after would re-enroll the worker.
        task = self._tasks.pop("heartbeat", None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.enrollment is not None and self.enrollment.enrolled and self._client is not None:
            try:
                await self._client.deregister(self.enrollment.worker_id or "",
                                              f"drained: {drain.reason}", self.enrollment.token)
                self.metrics.count_control_plane_call("deregister", "ok")
                log.info("deregistered worker %s", self.enrollment.worker_id)
            except ControlPlaneError as exc:
                self.metrics.count_control_plane_call("deregister", "failed")
                log.warning("deregistration failed (%s); the control plane will expire this "
                            "worker", exc)
        if self.supervisor is not None:
            await self.supervisor.stop()
        log.info("drain complete after %.1f s (%s); exiting", time.time() - drain.started_at,
                 drain.reason)

    # -- state -------------------------------------------------------------------------------

    async def readiness(self, *, live: bool = False) -> tuple[bool, str]:
        """What /readyz answers: draining first, then the engine's facts (checked now if live)."""
        if self.drain.current is not None:
            return False, f"draining ({self.drain.current.reason})"
        if self.monitor is None:
            return False, "agent starting"
        if live:
            await self.monitor.check_health()
        return self.monitor.readiness()

    def status(self) -> str:
        if self.drain.active:
            return "draining"
        if self.monitor is not None and self.monitor.readiness()[0]:
            return "ready"
        return "starting"

    def build_heartbeat(self) -> Heartbeat:
        sig = self.monitor.signals if self.monitor else None
        gpus = self.monitor.gpu_readings if self.monitor else []
        drain = self.drain.current
        depth = (sig.queue_depth if sig else None) or 0
        return Heartbeat(
            status=self.status(),  # type: ignore[arg-type]
            model_id=self.settings.model_id,
            queue_depth=depth, inflight=depth,
            running=sig.running if sig else None, waiting=sig.waiting if sig else None,
            gpu_util=_fraction(mean_utilization(gpus)),
            kv_cache_usage=_fraction(sig.kv_cache_usage if sig else None),
            ttft_p95_ms=_ms(sig.ttft_p95_s if sig else None),
            e2e_p95_ms=_ms(sig.e2e_p95_s if sig else None),
            requests_per_s=sig.requests_per_s if sig else None,
            drain_reason=drain.reason if drain else None,
            drain_deadline=drain.deadline if drain else None,
        )

    def snapshot(self) -> AgentSnapshot:
        monitor = self.monitor
        drain = self.drain.current
        return AgentSnapshot(
            engine=self.settings.engine, model_id=self.settings.model_id, version=__version__,
            ready=self.status() == "ready", draining=drain is not None,
            enrolled=bool(self.enrollment and self.enrollment.enrolled),
            engine_healthy=bool(monitor and monitor.state.healthy),
            signals=monitor.signals if monitor else EngineSignals(),
            gpus=list(monitor.gpu_readings) if monitor else [],
            last_heartbeat_at=self.heartbeat.last_ok_at if self.heartbeat else None,
            drain_deadline=drain.deadline if drain else None,
        )

