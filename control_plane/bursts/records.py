"""What a burst is on the wire and in the store (collection `bursts`, doc id = burst id).

A `BurstRecord` keeps facts (when it was created, first ready, ended and why, the instances seen
interrupted, the last traffic seen) plus the state the machine in `state.py` reached from them, and
its own timeline (bounded), so a burst's history survives the global event list being trimmed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from fleet.catalog import NAME_PATTERN
from fleet.schemas import Event
from fleet.validation import rule

BurstState = Literal["requesting_spot", "waiting_capacity", "instance_starting", "ready",
                     "interrupted", "resuming", "completed", "failed"]
STATES: tuple[BurstState, ...] = ("requesting_spot", "waiting_capacity", "instance_starting",
                                  "ready", "interrupted", "resuming", "completed", "failed")
TERMINAL: frozenset[str] = frozenset({"completed", "failed"})

# Why a burst ended (`end_reason`).
EndReason = Literal["duration", "idle", "budget", "cancelled", "pool_deleted", "no_capacity"]

MAX_EVENTS = 200  # a burst's own timeline keeps the first event and the newest ones
MAX_SEEN_INTERRUPTED = 256
MAX_DURATION_S = 30 * 86_400.0


@dataclass(frozen=True, slots=True)
class BurstRequest:
    """`POST /v1/bursts` body (SPEC §5). At least one of duration_s / idle_timeout_s is required
    (checked by the API: a burst with neither would hold its floor forever)."""

    pool: str = rule(pattern=NAME_PATTERN)
    replicas: int = rule(1, ge=1, le=1000)
    duration_s: float | None = rule(None, ge=1.0, le=MAX_DURATION_S)
    idle_timeout_s: float | None = rule(None, ge=1.0, le=MAX_DURATION_S)
    budget_usd: float | None = rule(None, ge=0.01, le=1_000_000.0)


@dataclass(frozen=True, slots=True)
class BurstRecord:
    id: str
    pool: str
    replicas: int
    created_at: float
    duration_s: float | None = None
    idle_timeout_s: float | None = None
    budget_usd: float | None = None
    state: BurstState = "requesting_spot"
    state_since: float = 0.0
    ready_at: float | None = None  # first time the pool had a ready replica during the burst
    ended_at: float | None = None
    end_reason: EndReason | None = None
    cancel_requested_at: float | None = None
    interruptions: int = 0
    seen_interrupted: tuple[str, ...] = ()  # instance ids already counted as interrupted
    last_request_at: float | None = None  # last traffic to the pool seen during the burst
    cost_usd: float = 0.0
    desired_replicas: int = 0
    ready_replicas: int = 0
    starting_replicas: int = 0
    last_error: str | None = None
    events: tuple[Event, ...] = ()

    @property
    def active(self) -> bool:
        return self.state not in TERMINAL

    @property
    def deadline(self) -> float | None:
        return None if self.duration_s is None else self.created_at + self.duration_s

    def replace(self, **changes: Any) -> BurstRecord:
        return dataclasses.replace(self, **changes)

    def progress(self, now: float) -> float | None:
        """0..1: the larger of elapsed/duration and cost/budget; 1 once ended; None when only an
        idle timeout bounds the burst (its end cannot be foreseen)."""
        if not self.active:
            return 1.0
        fractions = []
        if self.duration_s:
            fractions.append((now - self.created_at) / self.duration_s)
        if self.budget_usd:
            fractions.append(self.cost_usd / self.budget_usd)
        if not fractions:
            return None
        return min(1.0, max(0.0, *fractions))

    def to_doc(self) -> dict[str, Any]:
        doc = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        doc["seen_interrupted"] = list(self.seen_interrupted)
        doc["events"] = [dataclasses.asdict(e) for e in self.events]
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> BurstRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in doc.items() if k in names}
        values["seen_interrupted"] = tuple(doc.get("seen_interrupted") or ())
        values["events"] = tuple(Event(**e) for e in doc.get("events") or ())
        return cls(**values)

    def view(self, now: float) -> dict[str, Any]:
        """The API's shape (SPEC §5 plus INTERFACES.md)."""
        return {
            "id": self.id, "object": "burst", "pool": self.pool, "state": self.state,
            "replicas": self.replicas, "ready_replicas": self.ready_replicas,
            "desired_replicas": self.desired_replicas,
            "starting_replicas": self.starting_replicas,
            "progress": self.progress(now), "created_at": self.created_at,
            "started_at": self.created_at, "deadline": self.deadline,
            "duration_s": self.duration_s, "idle_timeout_s": self.idle_timeout_s,
            "budget_usd": self.budget_usd, "cost_usd": round(self.cost_usd, 6),
            "ready_at": self.ready_at, "ended_at": self.ended_at,
            "end_reason": self.end_reason, "interruptions": self.interruptions,
            "last_error": self.last_error, "state_since": self.state_since,
            "events": [event_view(e) for e in self.events],
        }


def event_view(event: Event) -> dict[str, Any]:
    return {"time": event.ts, "ts": event.ts, "kind": event.kind, "message": event.message,
            "severity": event.severity, "subject": event.subject, "data": event.data}


def with_events(events: tuple[Event, ...], new: tuple[Event, ...]) -> tuple[Event, ...]:
    """Append, keeping the first event (the creation) and the newest ones."""
    merged = events + new
    if len(merged) <= MAX_EVENTS:
        return merged
    return (merged[0], *merged[-(MAX_EVENTS - 1):])
