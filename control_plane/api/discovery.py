"""`GET /sd/workers`: Prometheus HTTP service discovery of every enrolled worker's agent.

    [{"targets": ["10.0.3.7:8080"],
      "labels": {"__meta_flotilla_worker_id": "w_..", "__meta_flotilla_model_id": "..",
                 "model_id": "..", "pool": "..", "instance_type": "..", "__metrics_path__": ..}}]

One target group per worker (their labels differ), sorted by worker id, at most
`sd_max_targets`. `__meta_*` labels are there for relabelling; `model_id`, `pool` and
`instance_type` are attached as they are (bounded by the fleet's size, never per request).
Unauthenticated like /metrics: Prometheus scrapes both with the same network access.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.http import json_response
from fleet.schemas import WorkerRecord

META = "__meta_flotilla_"


def target_group(record: WorkerRecord, ready: bool) -> dict[str, object]:
    parts = urlsplit(record.agent_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    labels = {
        f"{META}worker_id": record.worker_id,
        f"{META}instance_id": record.instance_id,
        f"{META}model_id": record.model_id,
        f"{META}engine": record.engine,
        f"{META}provider": record.provider,
        f"{META}status": record.status,
        f"{META}ready": "true" if ready else "false",
        f"{META}url": record.url,
        "model_id": record.model_id,
    }
    for name in ("pool", "instance_type", "zone"):
        value = getattr(record, name)
        if value:
            labels[f"{META}{name}"] = value
            if name != "zone":
                labels[name] = value
    if parts.scheme == "https":
        labels["__scheme__"] = "https"
    path = parts.path.rstrip("/")
    if path:
        labels["__metrics_path__"] = f"{path}/metrics"
    return {"targets": [address], "labels": labels}


async def sd_workers(request: Request) -> Response:
    cp = request.state.cp
    registry = cp.registry
    records = registry.records()[: cp.settings.sd_max_targets]
    return json_response([target_group(r, registry.is_ready(r.worker_id)) for r in records])


ROUTES = [Route("/sd/workers", sd_workers, methods=["GET"])]
