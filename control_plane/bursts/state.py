"""The burst state machine: a pure step from (record, observation, now) to (record, events).

The manager observes the pool every tick (the capacity manager's `pool_view`, the cost ledger,
router demand reports) and calls `step`; nothing here does I/O or reads a clock, so the tests
replay recorded observations.

Limits first, in this order (the first that holds ends the burst):

    cancel requested                              -> completed (cancelled)
    pool no longer exists                         -> failed    (pool_deleted)
    now >= created_at + duration_s                -> completed (duration)
    cost since start >= budget_usd                -> completed (budget)
    ready once, no request for idle_timeout_s     -> completed (idle)  counted from the later of
                                                                       first ready and last request
    never ready within capacity_timeout_s         -> failed    (no_capacity)

Otherwise, before the pool was first ready (requests, capacity, boot):

    a ready replica                       -> ready
    a replica launched, not ready yet     -> instance_starting
    the provider has no capacity now      -> waiting_capacity
    else                                  -> requesting_spot

and once it has been ready (interruptions and their replacement):

    ready       + a newly interrupted instance, or no ready replica left   -> interrupted
    interrupted / resuming + a newly interrupted instance                  -> interrupted
    interrupted / resuming + ready replicas, none starting or interrupted  -> ready
    interrupted / resuming + a replacement launching or starting           -> resuming
    otherwise the state stays (an interrupted burst waiting for capacity says so in last_error)

"Ready" means one ready replica: that is when the router's route moves traffic to the pool. The
replica count asked for is a floor the autoscaler keeps; `ready_replicas` tells how far it got.
"""

from __future__ import annotations

from dataclasses import dataclass

from control_plane.bursts.records import (
    MAX_SEEN_INTERRUPTED,
    BurstRecord,
    BurstState,
    EndReason,
    with_events,
)
from fleet.schemas import Event, Severity

DEFAULT_CAPACITY_TIMEOUT_S = 1800.0


@dataclass(frozen=True, slots=True)
class Observation:
    """What the control plane sees of the burst's pool at one moment."""

    at: float
    pool_exists: bool = True
    desired: int = 0
    ready: int = 0
    starting: int = 0  # launched (launching or booting or registered) but not ready
    waiting_capacity: bool = False
    last_error: str | None = None
    interrupted: tuple[str, ...] = ()  # instance ids the pool sees interrupted right now
    spent_usd: float = 0.0  # the pool's spend since the burst started
    last_request_at: float | None = None  # last traffic to the pool (router demand, in-flight)


@dataclass(frozen=True, slots=True)
class Step:
    record: BurstRecord
    events: tuple[Event, ...]


_SEVERITY: dict[str, Severity] = {"interrupted": "warning", "failed": "error"}

_MESSAGES: dict[str, str] = {
    "requesting_spot": "requesting capacity for the pool",
    "waiting_capacity": "waiting for capacity: the provider has none to give right now",
    "instance_starting": "instance launched; waiting for the engine to be ready",
    "ready": "pool ready: traffic moves to it",
    "interrupted": "capacity lost; the route's next target serves until it is replaced",
    "resuming": "replacement capacity starting",
}

_END_MESSAGES: dict[str, str] = {
    "cancelled": "cancelled",
    "pool_deleted": "the pool was deleted",
    "duration": "duration reached",
    "budget": "budget spent",
    "idle": "idle timeout: no requests to the pool",
    "no_capacity": "no ready capacity within the capacity timeout",
}


def event(record: BurstRecord, kind: str, message: str, now: float, *,
          severity: Severity = "info", **data: object) -> Event:
    return Event(ts=now, kind=kind, message=f"burst {record.id} on {record.pool}: {message}",
                 severity=severity, subject=record.id, data={"pool": record.pool, **data})


def created_event(record: BurstRecord) -> Event:
    limits = ", ".join(f"{name} {value:g}" for name, value in (
        ("duration_s", record.duration_s), ("idle_timeout_s", record.idle_timeout_s),
        ("budget_usd", record.budget_usd)) if value is not None)
    return event(record, "burst.created",
                 f"started: {record.replicas} replica(s), {limits}", record.created_at,
                 replicas=record.replicas)


def step(record: BurstRecord, obs: Observation, *,
         capacity_timeout_s: float = DEFAULT_CAPACITY_TIMEOUT_S) -> Step:
    if not record.active:
        return Step(record, ())
    now = obs.at
    last_request = _latest(record.last_request_at, obs.last_request_at)
    record = record.replace(
        cost_usd=max(record.cost_usd, obs.spent_usd), desired_replicas=obs.desired,
        ready_replicas=obs.ready, starting_replicas=obs.starting, last_request_at=last_request)
    events: list[Event] = []

    if obs.last_error and obs.last_error != record.last_error:
        events.append(event(record, "burst.capacity_error", obs.last_error, now,
                            severity="warning"))
    record = record.replace(last_error=obs.last_error)

    reason = _end_reason(record, obs, capacity_timeout_s)
    if reason is not None:
        state: BurstState = "failed" if reason in ("pool_deleted", "no_capacity") else "completed"
        message = _END_MESSAGES[reason]
        if reason == "no_capacity" and record.last_error:
            message = f"{message} (last error: {record.last_error})"
        record = record.replace(state=state, state_since=now, ended_at=now, end_reason=reason)
        events.append(event(record, f"burst.{state}", f"{state}: {message}", now,
                            severity="error" if state == "failed" else "info",
                            reason=reason, cost_usd=round(record.cost_usd, 6)))
        return Step(record.replace(events=with_events(record.events, tuple(events))),
                    tuple(events))

    new_interrupted = [i for i in obs.interrupted if i not in record.seen_interrupted]
    if new_interrupted:
        seen = (*record.seen_interrupted, *new_interrupted)[-MAX_SEEN_INTERRUPTED:]
        record = record.replace(interruptions=record.interruptions + len(new_interrupted),
                                seen_interrupted=seen)
        for instance_id in new_interrupted:
            events.append(event(record, "burst.spot_interruption",
                                f"instance {instance_id} interrupted", now, severity="warning",
                                instance_id=instance_id))

    target = _next_state(record, obs, bool(new_interrupted))
    if target != record.state:
        if target == "ready" and record.ready_at is None:
            record = record.replace(ready_at=now)
        message = _MESSAGES[target]
        if target in ("waiting_capacity", "interrupted") and obs.last_error:
            message = f"{message} ({obs.last_error})"
        previous = record.state
        record = record.replace(state=target, state_since=now)
        events.append(event(record, f"burst.{target}", message, now,
                            severity=_SEVERITY.get(target, "info"), previous=previous,
                            ready_replicas=obs.ready))
    if events:
        record = record.replace(events=with_events(record.events, tuple(events)))
    return Step(record, tuple(events))


def _end_reason(record: BurstRecord, obs: Observation, capacity_timeout_s: float,
                ) -> EndReason | None:
    now = obs.at
    if record.cancel_requested_at is not None:
        return "cancelled"
    if not obs.pool_exists:
        return "pool_deleted"
    if record.deadline is not None and now >= record.deadline:
        return "duration"
    if record.budget_usd is not None and record.cost_usd >= record.budget_usd:
        return "budget"
    if record.idle_timeout_s is not None and record.ready_at is not None:
        idle_since = _latest(record.ready_at, record.last_request_at) or record.ready_at
        if now - idle_since >= record.idle_timeout_s:
            return "idle"
    if record.ready_at is None and now - record.created_at >= capacity_timeout_s:
        return "no_capacity"
    return None


def _next_state(record: BurstRecord, obs: Observation, newly_interrupted: bool) -> BurstState:
    if record.ready_at is None:
        if obs.ready > 0:
            return "ready"
        if obs.starting > 0:
            return "instance_starting"
        if obs.waiting_capacity:
            return "waiting_capacity"
        return "requesting_spot"
    if record.state == "ready":
        return "interrupted" if newly_interrupted or obs.ready == 0 else "ready"
    if newly_interrupted:
        return "interrupted"
    if obs.ready > 0 and obs.starting == 0 and not obs.interrupted:
        return "ready"
    if obs.starting > 0:
        return "resuming"
    return record.state


def _latest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
