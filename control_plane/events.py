"""The fleet's timeline: every status change is one `Event`, logged here and queued for the store.

Kinds emitted by this package (others add theirs: autoscaler.*, burst.*, instance.*):
    worker.registered  worker.ready  worker.not_ready  worker.draining  worker.expired
    worker.deregistered  worker.removed  key.created  key.deleted  worker_token.revoked
    worker_token.readmitted  store.reseeded  store.epoch_changed
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from control_plane.metrics import ControlPlaneMetrics
from control_plane.writer import WorkerWriter
from fleet.schemas import Event, Severity

log = logging.getLogger("flotilla.control_plane.events")

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class EventLog:
    def __init__(self, writer: WorkerWriter, metrics: ControlPlaneMetrics,
                 clock: Callable[[], float]) -> None:
        self.writer = writer
        self.metrics = metrics
        self.clock = clock

    def emit(self, kind: str, message: str, *, severity: Severity = "info",
             subject: str | None = None, data: dict[str, Any] | None = None,
             now: float | None = None) -> Event:
        event = Event(ts=self.clock() if now is None else now, kind=kind, message=message,
                      severity=severity, subject=subject, data=data or {})
        log.log(_LEVELS[severity], "%s: %s", kind, message,
                extra={"event_kind": kind, "subject": subject})
        self.metrics.events.labels(kind).inc()
        self.writer.event(event)
        return event
