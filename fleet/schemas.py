"""The worker wire contract: what agents send the control plane and what the fleet store keeps.

    agent ── POST /v1/workers/register    RegisterRequest   ──► control plane ─► RegisterResponse
    agent ── POST /v1/workers/{id}/heartbeat  Heartbeat     ──►               ─► HeartbeatResponse
    agent ── POST /v1/workers/{id}/deregister Deregister    ──►
                                   control plane ── WorkerRecord ──► fleet store ──► router

A `WorkerRecord` keeps facts (when it registered, last heartbeat, what it last reported, when the
control plane's own probe last passed, when a drain was asked for); whether it is *ready* is derived
from those facts by `readiness()`, never stored as a free-standing status that could drift.
Fractions (`gpu_util`, `kv_cache_usage`) are 0..1; times are Unix seconds; latencies milliseconds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from fleet.validation import rule

WorkerStatus = Literal["starting", "ready", "draining"]
DrainReason = Literal["spot_interruption", "rebalance", "sigterm", "control_plane", "scale_down"]
Severity = Literal["info", "warning", "error"]

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,127}"
ENGINE_PATTERN = r"[a-z][a-z0-9_.-]{0,31}"


def check_http_url(value: str) -> str | None:
    """None if `value` is a plain http(s) URL with a host; otherwise what is wrong with it."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return "must be a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username or parts.password:
        return "must not carry credentials"
    if parts.query or parts.fragment:
        return "must not carry a query or fragment"
    if port == 0:
        return "must not use port 0"
    return None


def _url(default: Any = dataclasses.MISSING) -> Any:
    return rule(default, max_len=512, check=check_http_url)


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    instance_id: str = rule(pattern=ID_PATTERN)
    model_id: str = rule(pattern=ID_PATTERN)
    url: str = _url()  # the engine URL the router should call (ADVERTISE_URL)
    agent_url: str = _url()  # the agent's own URL, for probes and Prometheus
    worker_id: str | None = rule(None, pattern=ID_PATTERN)
    provider_instance_id: str | None = rule(None, pattern=ID_PATTERN)
    engine: str = rule("vllm", pattern=ENGINE_PATTERN)
    tensor_parallel_size: int | None = rule(None, ge=1, le=64)
    gpu_memory_utilization: float | None = rule(None, ge=0.0, le=1.0)
    agent_version: str | None = rule(None, max_len=64)


@dataclass(frozen=True, slots=True)
class RegisterResponse:
    worker_id: str
    heartbeat_interval_s: float
    # Present only on the first registration of an instance: the agent keeps it from then on.
    bootstrap_token: str | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    status: WorkerStatus
    model_id: str = rule(pattern=ID_PATTERN)
    queue_depth: int = rule(0, ge=0, le=1_000_000)  # running + waiting, as the engine reports
    inflight: int = rule(0, ge=0, le=1_000_000)  # requests the engine is holding right now
    running: int | None = rule(None, ge=0, le=1_000_000)
    waiting: int | None = rule(None, ge=0, le=1_000_000)
    gpu_util: float | None = rule(None, ge=0.0, le=1.0)
    kv_cache_usage: float | None = rule(None, ge=0.0, le=1.0)
    ttft_p95_ms: float | None = rule(None, ge=0.0, le=3_600_000.0)
    e2e_p95_ms: float | None = rule(None, ge=0.0, le=3_600_000.0)
    requests_per_s: float | None = rule(None, ge=0.0, le=1_000_000.0)
    drain_reason: DrainReason | None = None
    drain_deadline: float | None = rule(None, ge=0.0)  # Unix time the machine goes away


@dataclass(frozen=True, slots=True)
class HeartbeatResponse:
    heartbeat_interval_s: float
    drain: bool = False  # the control plane asks the worker to drain (scale-down, replacement)


@dataclass(frozen=True, slots=True)
class Deregister:
    reason: str | None = rule(None, max_len=200)


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """Facts about one worker as the control plane knows them."""

    worker_id: str
    instance_id: str
    model_id: str
    engine: str
    url: str
    agent_url: str
    registered_at: float
    last_heartbeat: float
    status: WorkerStatus = "starting"  # what the agent last reported
    provider: str = "static"  # local | aws | static (enrolled by hand)
    provider_instance_id: str | None = None
    pool: str | None = None
    instance_type: str | None = None
    zone: str | None = None
    queue_depth: int = 0
    inflight: int = 0
    running: int | None = None
    waiting: int | None = None
    gpu_util: float | None = None
    kv_cache_usage: float | None = None
    ttft_p95_ms: float | None = None
    e2e_p95_ms: float | None = None
    requests_per_s: float | None = None
    probe_passed_at: float | None = None  # last time the control plane's /readyz probe passed
    probe_failures: int = 0  # consecutive failed probes
    probe_error: str | None = None
    url_error: str | None = None  # why the advertised URL was refused, if it was
    drain_requested_at: float | None = None
    drain_reason: str | None = None
    drain_deadline: float | None = None

    def replace(self, **changes: Any) -> WorkerRecord:
        return dataclasses.replace(self, **changes)


def readiness(
    record: WorkerRecord,
    now: float,
    *,
    heartbeat_interval_s: float,
    missed_heartbeats: int = 3,
    probe_failure_threshold: int = 1,
) -> tuple[bool, str]:
    """Whether the router may send this worker new requests, and why (not)."""
    if record.url_error:
        return False, f"advertised URL refused: {record.url_error}"
    if now - record.last_heartbeat > heartbeat_interval_s * missed_heartbeats:
        return False, "heartbeat missed"
    if record.drain_requested_at is not None or record.status == "draining":
        return False, "draining"
    if record.status != "ready":
        return False, f"agent reports {record.status}"
    if record.probe_passed_at is None:
        return False, "readiness probe has not passed yet"
    if record.probe_failures >= probe_failure_threshold:
        return False, f"readiness probe failing: {record.probe_error or 'unknown'}"
    return True, "ready"


def is_expired(record: WorkerRecord, now: float, *, heartbeat_interval_s: float,
               missed_heartbeats: int = 3) -> bool:
    """Silent for `missed_heartbeats` intervals: the control plane forgets the worker."""
    return now - record.last_heartbeat > heartbeat_interval_s * missed_heartbeats


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the fleet's timeline (what the dashboard and `GET /v1/events` show)."""

    ts: float
    kind: str  # e.g. worker.registered, worker.ready, autoscaler.scale_up, burst.state
    message: str
    severity: Severity = "info"
    subject: str | None = None  # the worker, pool, burst or key it is about
    data: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PoolDemand:
    """What one router saw of one pool's (or unrouted model's) traffic, cumulative since start."""

    requests: int = 0  # requests routed to the pool's target
    cold_requests: int = 0  # requests that found no ready worker in the pool
    waiting: int = 0  # requests held right now in the cold-start wait
    last_cold_at: float | None = None  # last time a request found the pool cold


@dataclass(frozen=True, slots=True)
class RouterReport:
    """A router replica's periodic report (store collection `routers`, keyed by router_id).

    Other replicas add `inflight` to their own counts for least-outstanding-requests balancing;
    the control plane reads `demand` (scale from zero) and `circuits` (dashboard).
    """

    router_id: str
    ts: float
    started_at: float
    inflight: dict[str, int] = dataclasses.field(default_factory=dict)  # worker id -> requests
    circuits: dict[str, str] = dataclasses.field(default_factory=dict)  # worker id -> state
    demand: dict[str, PoolDemand] = dataclasses.field(default_factory=dict)  # pool -> demand
