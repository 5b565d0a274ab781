"""The worker registry: the control plane's memory of every enrolled worker, written through to the
fleet store, of whose worker records and ready sets it is the only writer.

Facts live in `WorkerRecord`s; whether a worker is ready is derived by `fleet.schemas.readiness`
(fresh heartbeat, agent reports `ready`, the control plane's own probe passed, not draining). The
registry re-derives it whenever a fact changes and then:

    readiness or membership changed   record + ready set written, `workers` topic published, event
    anything else (a heartbeat)       record written (batched by the writer), no notification

so 1,000 workers heartbeating every 10 s cost routers nothing. Events:

    worker.registered    a registration (data.reregistered when the worker id was known)
    worker.ready         not ready -> ready
    worker.not_ready     ready -> not ready, with the reason (not for draining, see below)
    worker.draining      the agent reports draining or a drain was requested
    worker.expired       silent for `missed_heartbeats` intervals: forgotten
    worker.deregistered  the agent said goodbye
    worker.removed       removed by the control plane (token revoked, instance forgotten)

Heartbeats are handled synchronously (no await between reading and writing memory), so two
requests can never interleave half-way. Registrations take a lock: they read the store (instance
documents) and may issue a token before changing memory.

After a restart the records are read back from the store; their probe facts stand, and their
heartbeat freshness is measured from the restart until their next heartbeat (a control plane that
was down for a minute must not declare the whole fleet dead).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from control_plane.enrollment import choose_worker_id, registered_record, same_endpoint
from control_plane.errors import Conflict, Forbidden, NotFound, StoreDown
from control_plane.events import EventLog
from control_plane.metrics import ControlPlaneMetrics
from control_plane.probes import ProbeRequests, ProbeTarget
from control_plane.settings import ControlPlaneSettings
from control_plane.tokens import WorkerTokens
from control_plane.url_policy import UrlPolicy
from control_plane.writer import WorkerWriter
from fleet.schemas import (
    Heartbeat,
    HeartbeatResponse,
    RegisterRequest,
    Severity,
    WorkerRecord,
    is_expired,
    readiness,
)
from fleet.store import INSTANCES, FleetStore, FleetStoreError, StoreUnavailable

log = logging.getLogger("flotilla.control_plane.registry")


@dataclass(slots=True)
class _State:
    """What the registry last derived and wrote for one worker (memory only)."""

    ready: bool
    reason: str
    draining: bool
    generation: int  # changes whenever a probe result in flight would no longer apply
    restored: bool = False  # read back at start-up, no heartbeat since


@dataclass(frozen=True, slots=True)
class RegisterOutcome:
    worker_id: str
    created: bool
    bootstrap_token: str | None


class WorkerRegistry:
    name = "worker records"

    def __init__(self, store: FleetStore, writer: WorkerWriter, events: EventLog,
                 tokens: WorkerTokens, url_policy: UrlPolicy, probes: ProbeRequests,
                 metrics: ControlPlaneMetrics, settings: ControlPlaneSettings,
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.writer = writer
        self.events = events
        self.tokens = tokens
        self.url_policy = url_policy
        self.probes = probes
        self.metrics = metrics
        self.settings = settings
        self.clock = clock
        self.interval_s = settings.heartbeat_interval_s
        self._records: dict[str, WorkerRecord] = {}
        self._states: dict[str, _State] = {}
        self._register_lock = asyncio.Lock()
        self._generations = 0
        self._restored_at = 0.0
        # Called when a worker starts draining (the capacity manager replaces Spot-interrupted
        # ones at once); listeners must not raise or block.
        self.on_draining: list[Callable[[WorkerRecord], None]] = []

    # reading ------------------------------------------------------------------------------------
    def get(self, worker_id: str) -> WorkerRecord | None:
        return self._records.get(worker_id)

    def records(self) -> list[WorkerRecord]:
        return [self._records[w] for w in sorted(self._records)]

    def __len__(self) -> int:
        return len(self._records)

    def is_ready(self, worker_id: str) -> bool:
        state = self._states.get(worker_id)
        return state is not None and state.ready

    def view(self, record: WorkerRecord, now: float) -> dict[str, Any]:
        """A worker as the admin API shows it: its facts plus what was derived from them."""
        state = self._states[record.worker_id]
        out = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
        out.update(ready=state.ready, reason=state.reason, draining=state.draining,
                   heartbeat_age_s=round(max(0.0, now - record.last_heartbeat), 3))
        return out

    def status_counts(self) -> dict[tuple[str, bool], int]:
        counts: collections.Counter[tuple[str, bool]] = collections.Counter()
        for worker_id, record in self._records.items():
            counts[(record.status, self._states[worker_id].ready)] += 1
        return dict(counts)

    def oldest_heartbeat(self) -> float | None:
        return min((r.last_heartbeat for r in self._records.values()), default=None)

    # start-up and store loss --------------------------------------------------------------------
    async def load(self) -> int:
        """Read the records back from the store (a restart keeps the fleet)."""
        records = await self.store.list_workers()
        now = self._restored_at = self.clock()
        for record in records:
            self._states.pop(record.worker_id, None)
            self._records.pop(record.worker_id, None)
            state = _State(ready=False, reason="", draining=False,
                           generation=self._next_generation(), restored=True)
            self._states[record.worker_id] = state
            self._commit(record, now, quiet=True)
        if records:
            # The ready sets may disagree with the records (written by an older process):
            # rewrite them all and tell the routers once.
            self.writer.publish()
        return len(records)

    async def reseed(self) -> int:
        """Rewrite every record and ready set (the store lost them) and wait for the write."""
        for worker_id, record in self._records.items():
            self.writer.save(record, self._states[worker_id].ready)
        self.writer.publish()
        error = await self.writer.committed(timeout=30.0)
        if isinstance(error, FleetStoreError):
            raise error
        if error is not None:
            raise StoreUnavailable(f"writing worker records failed: {error!r}")
        return len(self._records)

    # the worker API -----------------------------------------------------------------------------
    async def register(self, request: RegisterRequest, token: str | None,
                       now: float) -> RegisterOutcome:
        async with self._register_lock:
            needs_token = self.tokens.authorize_register(request.instance_id, token)
            instance = await self._instance(request.instance_id)
            problem = self.url_policy.check({"url": request.url, "agent_url": request.agent_url},
                                            instance)
            if problem:
                log.warning("registration of instance %s refused: %s", request.instance_id,
                            problem)
                raise Forbidden(problem, param="url", code="url_refused")
            worker_id, existing = choose_worker_id(self._records, request)
            issued = None
            if needs_token:
                try:
                    issued = await self.tokens.issue(request.instance_id, now)
                except FleetStoreError as exc:
                    raise StoreDown(f"fleet store unavailable, retry later: {exc}") from exc
            record = registered_record(worker_id, request, instance, existing, now)
            if existing is not None and existing.model_id != record.model_id:
                # Leave the old model's ready set (the writer deletes before it saves).
                self.writer.delete(worker_id)
            if existing is None or not same_endpoint(existing, record):
                self._states.pop(worker_id, None)
            state = self._states.get(worker_id)
            if state is not None:
                state.restored = False
            self._commit(record, now)
            self.events.emit(
                "worker.registered",
                f"worker {worker_id} ({record.model_id}) registered from instance "
                f"{record.instance_id} at {record.url}",
                subject=worker_id, now=now,
                data={"instance_id": record.instance_id, "model_id": record.model_id,
                      "url": record.url, "agent_url": record.agent_url, "pool": record.pool,
                      "reregistered": existing is not None,
                      "token_issued": issued is not None})
            return RegisterOutcome(worker_id, existing is None or issued is not None, issued)

    def heartbeat(self, worker_id: str, token: str | None, beat: Heartbeat,
                  now: float) -> HeartbeatResponse:
        owner = self.tokens.owner(token)
        record = self._records.get(worker_id)
        if record is None:
            raise NotFound(f"unknown worker {worker_id}: register again", code="unknown_worker")
        if record.instance_id != owner.instance_id:
            raise Forbidden(f"worker {worker_id} does not belong to this token's instance")
        if beat.model_id != record.model_id:
            raise Conflict(f"heartbeat model_id {beat.model_id!r} differs from the registered "
                           f"{record.model_id!r}: register again", param="model_id")
        state = self._states[worker_id]
        if not state.restored:
            lag = now - record.last_heartbeat - self.interval_s
            self.metrics.heartbeat_lag.observe(max(0.0, lag))
        state.restored = False
        changes: dict[str, Any] = dict(
            last_heartbeat=now, status=beat.status, queue_depth=beat.queue_depth,
            inflight=beat.inflight, running=beat.running, waiting=beat.waiting,
            gpu_util=beat.gpu_util, kv_cache_usage=beat.kv_cache_usage,
            ttft_p95_ms=beat.ttft_p95_ms, e2e_p95_ms=beat.e2e_p95_ms,
            requests_per_s=beat.requests_per_s)
        if beat.drain_reason is not None:
            changes["drain_reason"] = beat.drain_reason
        if beat.drain_deadline is not None:
            changes["drain_deadline"] = beat.drain_deadline
        if beat.status != "ready" and record.probe_passed_at is not None:
            # A probe passed before the agent stopped being ready proves nothing about later.
            changes.update(probe_passed_at=None, probe_failures=0, probe_error=None)
            state.generation = self._next_generation()
        became_ready = beat.status == "ready" and (
            record.status != "ready"
            or (record.probe_passed_at is None and not record.probe_failures))
        record = record.replace(**changes)
        self._commit(record, now)
        if became_ready and record.drain_requested_at is None:
            # Probe now rather than at the next periodic round; a worker whose probes fail is
            # retried by the periodic round only (not on each of its heartbeats).
            self.probes.request(worker_id)
        return HeartbeatResponse(heartbeat_interval_s=self.interval_s,
                                 drain=record.drain_requested_at is not None)

    def deregister(self, worker_id: str, token: str | None, reason: str | None,
                   now: float) -> None:
        owner = self.tokens.owner(token)
        record = self._records.get(worker_id)
        if record is None:
            raise NotFound(f"unknown worker {worker_id}", code="unknown_worker")
        if record.instance_id != owner.instance_id:
            raise Forbidden(f"worker {worker_id} does not belong to this token's instance")
        self.remove(worker_id, "worker.deregistered",
                    f"worker {worker_id} deregistered" + (f": {reason}" if reason else ""),
                    now=now, data={"reason": reason})

    # the control plane's own decisions ---------------------------------------------------------
    def request_drain(self, worker_id: str, now: float, reason: str = "control_plane"
                      ) -> WorkerRecord:
        """Ask a worker to drain: it leaves the ready set now, its next heartbeat says drain."""
        record = self._records.get(worker_id)
        if record is None:
            raise NotFound(f"unknown worker {worker_id}", param="worker_id")
        if record.drain_requested_at is None:
            record = record.replace(drain_requested_at=now,
                                    drain_reason=record.drain_reason or reason)
            self._commit(record, now)
        return record

    def remove(self, worker_id: str, kind: str, message: str, *, now: float,
               severity: Severity = "info", data: dict[str, Any] | None = None) -> bool:
        record = self._records.pop(worker_id, None)
        if record is None:
            return False
        self._states.pop(worker_id, None)
        self.writer.delete(worker_id)
        self.events.emit(kind, message, subject=worker_id, now=now,
                         severity=severity,
                         data={"instance_id": record.instance_id, "model_id": record.model_id,
                               **(data or {})})
        return True

    def remove_instance(self, instance_id: str, reason: str, now: float) -> list[str]:
        """Forget every worker of an instance (its token was revoked, its machine is gone)."""
        removed = [w for w, r in self._records.items() if r.instance_id == instance_id]
        for worker_id in removed:
            self.remove(worker_id, "worker.removed", f"worker {worker_id} removed: {reason}",
                        now=now, severity="warning", data={"reason": reason})
        return removed

    def expire(self, now: float) -> list[str]:
        """Forget workers silent for `missed_heartbeats` intervals."""
        expired = []
        for worker_id, record in list(self._records.items()):
            if is_expired(self._effective(record, self._states[worker_id]), now,
                          heartbeat_interval_s=self.interval_s,
                          missed_heartbeats=self.settings.missed_heartbeats):
                expired.append(worker_id)
                self.remove(worker_id, "worker.expired",
                            f"worker {worker_id} expired: no heartbeat for "
                            f"{now - record.last_heartbeat:.1f} s", now=now, severity="warning",
                            data={"last_heartbeat": record.last_heartbeat})
        return expired

    # probes -------------------------------------------------------------------------------------
    def probe_targets(self, only: set[str] | None) -> list[ProbeTarget]:
        ids = self._records if only is None else [w for w in only if w in self._records]
        targets = []
        for worker_id in ids:
            record = self._records[worker_id]
            if record.status == "ready" and record.drain_requested_at is None:
                targets.append(ProbeTarget(worker_id, self._states[worker_id].generation,
                                           record.agent_url.rstrip("/") + "/readyz"))
        return targets

    def apply_probe(self, worker_id: str, generation: int, passed: bool, error: str | None,
                    now: float) -> None:
        record = self._records.get(worker_id)
        state = self._states.get(worker_id)
        if record is None or state is None or state.generation != generation:
            return  # the worker changed (or left) while the probe was in flight
        if passed:
            if record.probe_passed_at is not None and not record.probe_failures:
                # Still passing: memory only; the next heartbeat's write carries it along.
                self._records[worker_id] = record.replace(probe_passed_at=now)
                return
            self._commit(record.replace(probe_passed_at=now, probe_failures=0, probe_error=None),
                         now)
        else:
            self._commit(record.replace(probe_failures=record.probe_failures + 1,
                                        probe_error=error), now)

    # internals ----------------------------------------------------------------------------------
    def _next_generation(self) -> int:
        self._generations += 1
        return self._generations

    def _effective(self, record: WorkerRecord, state: _State) -> WorkerRecord:
        if state.restored and record.last_heartbeat < self._restored_at:
            return record.replace(last_heartbeat=self._restored_at)
        return record

    def _commit(self, record: WorkerRecord, now: float, *, quiet: bool = False) -> None:
        """Keep `record`, derive readiness, queue the write, emit events for transitions
        (`quiet`: no events, for records read back at start-up)."""
        worker_id = record.worker_id
        state = self._states.get(worker_id)
        new = state is None
        if state is None:
            state = self._states[worker_id] = _State(False, "", False, self._next_generation())
        ready, reason = readiness(
            self._effective(record, state), now, heartbeat_interval_s=self.interval_s,
            missed_heartbeats=self.settings.missed_heartbeats,
            probe_failure_threshold=self.settings.probe_failure_threshold)
        draining = record.drain_requested_at is not None or record.status == "draining"
        was_ready, was_draining = state.ready, state.draining
        state.ready, state.reason, state.draining = ready, reason, draining
        self._records[worker_id] = record
        self.writer.save(record, ready, publish=new or ready != was_ready)
        if quiet:
            return
        if draining and not was_draining:
            why = record.drain_reason or "requested"
            self.events.emit("worker.draining", f"worker {worker_id} draining ({why})",
                             subject=worker_id, now=now,
                             data={"reason": record.drain_reason,
                                   "deadline": record.drain_deadline})
            for listener in self.on_draining:
                try:
                    listener(record)
                except Exception:
                    log.exception("drain listener failed")
        if ready and not was_ready:
            self.events.emit("worker.ready", f"worker {worker_id} ({record.model_id}) is ready",
                             subject=worker_id, now=now, data={"model_id": record.model_id})
        elif was_ready and not ready and not draining:
            self.events.emit("worker.not_ready", f"worker {worker_id} is not ready: {reason}",
                             subject=worker_id, now=now, severity="warning",
                             data={"reason": reason})

    async def _instance(self, instance_id: str) -> dict[str, Any] | None:
        try:
            return await self.store.get_doc(INSTANCES, instance_id)
        except FleetStoreError as exc:
            raise StoreDown(f"fleet store unavailable, retry later: {exc}") from exc
