"""Routers' reports (collection `routers`) as `RouterReport`s, for the autoscaler's cold demand.

Reports come from other processes (maybe a newer version): unknown fields are ignored and a
malformed report is skipped, never fatal.
"""

from __future__ import annotations

import logging
from typing import Any

from fleet.schemas import PoolDemand, RouterReport
from fleet.store import ROUTERS, FleetStore, from_doc

log = logging.getLogger("flotilla.capacity.reports")


def parse_report(router_id: str, doc: Any) -> RouterReport | None:
    if not isinstance(doc, dict):
        return None
    try:
        demand = {str(key): from_doc(PoolDemand, value)
                  for key, value in (doc.get("demand") or {}).items() if isinstance(value, dict)}
        return RouterReport(router_id=router_id, ts=float(doc["ts"]),
                            started_at=float(doc.get("started_at") or 0.0), demand=demand)
    except (KeyError, TypeError, ValueError) as exc:
        log.debug("router report %s unreadable: %s", router_id, exc)
        return None


async def read_reports(store: FleetStore) -> list[RouterReport]:
    docs = await store.get_docs(ROUTERS)
    return [r for router_id, doc in docs.items() if (r := parse_report(router_id, doc))]
