"""What a registration makes of a worker: its id and its record (pure functions).

    worker id   the agent's WORKER_ID if given (409 if another instance owns it); else the id
                of this instance's worker with the same agent URL (an agent restarted without
                WORKER_ID keeps its id); else a new one
    record      the registration's facts, plus `provider`, `pool`, `instance_type`, `zone` and
                `provider_instance_id` from the instance document a capacity provider wrote;
                when the engine is the same one at the same place (model, engine, URLs), what
                the agent and the probe said before still holds; a pending drain always does
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control_plane.errors import Conflict
from fleet import secrets
from fleet.schemas import RegisterRequest, WorkerRecord

# Facts an instance document (written by capacity providers) contributes to a worker record.
INSTANCE_FACTS = ("provider", "pool", "instance_type", "zone", "provider_instance_id")

# Facts kept across a re-registration of the same engine at the same place.
KEPT_FACTS = ("status", "queue_depth", "inflight", "running", "waiting", "gpu_util",
              "kv_cache_usage", "ttft_p95_ms", "e2e_p95_ms", "requests_per_s", "probe_passed_at",
              "probe_failures", "probe_error", "drain_requested_at", "drain_reason",
              "drain_deadline")


def choose_worker_id(records: Mapping[str, WorkerRecord], request: RegisterRequest
                     ) -> tuple[str, WorkerRecord | None]:
    if request.worker_id:
        existing = records.get(request.worker_id)
        if existing is not None and existing.instance_id != request.instance_id:
            raise Conflict(f"worker id {request.worker_id} belongs to another instance",
                           param="worker_id", code="worker_id_conflict")
        return request.worker_id, existing
    for record in records.values():
        if record.instance_id == request.instance_id and record.agent_url == request.agent_url:
            return record.worker_id, record
    return secrets.new_id("w"), None


def registered_record(worker_id: str, request: RegisterRequest,
                      instance: Mapping[str, Any] | None, existing: WorkerRecord | None,
                      now: float) -> WorkerRecord:
    facts: dict[str, Any] = {"provider": "static",
                             "provider_instance_id": request.provider_instance_id}
    for name in INSTANCE_FACTS:
        if instance is not None and instance.get(name) is not None:
            facts[name] = str(instance[name])
    record = WorkerRecord(
        worker_id=worker_id, instance_id=request.instance_id, model_id=request.model_id,
        engine=request.engine, url=request.url, agent_url=request.agent_url,
        registered_at=now, last_heartbeat=now, **facts)
    if existing is not None and same_endpoint(existing, record):
        record = record.replace(**{name: getattr(existing, name) for name in KEPT_FACTS})
    elif existing is not None and existing.drain_requested_at is not None:
        record = record.replace(drain_requested_at=existing.drain_requested_at,
                                drain_reason=existing.drain_reason)
    return record


def same_endpoint(a: WorkerRecord, b: WorkerRecord) -> bool:
    return (a.model_id, a.engine, a.url, a.agent_url) == (b.model_id, b.engine, b.url,
                                                           b.agent_url)
