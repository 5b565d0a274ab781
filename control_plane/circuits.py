"""What the routers' circuit breakers think of each worker, read from their reports.

Every router replica publishes a `RouterReport` (collection `routers`, router/reporting.py) with
the state of its breaker for each worker it has sent traffic to (`healthy`, `degraded`,
`circuit_open`). Breakers are local to a replica, so a worker may be open in one router and
healthy in another; the admin API shows them per router:

    worker view  "circuits": {"<router_id>": "<state>", ...}   (empty: no router has an opinion)

A report older than `stale_s` by the report's own wall-clock `ts` is left out: a router that died
without withdrawing its report must not keep a worker looking broken. Reports are read from the
store per admin request (a handful of small documents); nothing is cached, so nothing drifts.
If the store does not answer, the workers are still listed (memory is the truth for them) and
their circuits are simply unknown: `{}`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fleet.store import ROUTERS, FleetStore, FleetStoreError

log = logging.getLogger("flotilla.control_plane")

REPORT_STALE_S = 60.0  # generous: routers report every second or so; clocks may differ a little
READ_TIMEOUT_S = 2.0


def circuits_by_worker(docs: dict[str, dict[str, Any]], now: float,
                       stale_s: float = REPORT_STALE_S) -> dict[str, dict[str, str]]:
    """worker id -> {router id: breaker state}, from fresh, well-formed reports only."""
    out: dict[str, dict[str, str]] = {}
    for router_id, doc in sorted(docs.items()):
        if not isinstance(doc, dict):
            continue
        ts = doc.get("ts")
        circuits = doc.get("circuits")
        if not isinstance(ts, int | float) or now - ts > stale_s or not isinstance(circuits, dict):
            continue
        for worker_id, state in circuits.items():
            if isinstance(worker_id, str) and isinstance(state, str):
                out.setdefault(worker_id, {})[router_id] = state
    return out


async def read_circuits(store: FleetStore, now: float,
                        stale_s: float = REPORT_STALE_S) -> dict[str, dict[str, str]]:
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            docs = await store.get_docs(ROUTERS)
    except (FleetStoreError, TimeoutError) as exc:
        log.debug("router reports unreadable: %s", exc)
        return {}
    return circuits_by_worker(docs, now, stale_s)
