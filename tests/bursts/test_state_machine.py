"""The burst state machine on recorded observations: no I/O, no clock."""

from __future__ import annotations

from typing import Any

from control_plane.bursts.records import BurstRecord
from control_plane.bursts.state import Observation, step

T0 = 1_000_000.0


def make_burst(**overrides: Any) -> BurstRecord:
    values: dict[str, Any] = dict(id="burst_1", pool="p", replicas=2, created_at=T0,
                                  state_since=T0, duration_s=3600.0)
    values.update(overrides)
    return BurstRecord(**values)


def replay(record: BurstRecord, observations: list[Observation], **kw: Any
           ) -> tuple[BurstRecord, list[str]]:
    states = []
    for obs in observations:
        record = step(record, obs, **kw).record
        states.append(record.state)
    return record, states


def obs(dt: float, **fields: Any) -> Observation:
    return Observation(at=T0 + dt, **fields)


def test_cold_start_goes_through_capacity_boot_and_ready() -> None:
    record, states = replay(make_burst(), [
        obs(1),
        obs(2, desired=2, waiting_capacity=True, last_error="InsufficientInstanceCapacity"),
        obs(30, desired=2, starting=1),
        obs(60, desired=2, starting=1, ready=1),
        obs(70, desired=2, ready=2),
    ])
    assert states == ["requesting_spot", "waiting_capacity", "instance_starting", "ready",
                      "ready"]
    assert record.ready_at == T0 + 60
    assert record.ready_replicas == 2
    kinds = [e.kind for e in record.events]
    assert kinds == ["burst.capacity_error", "burst.waiting_capacity",
                     "burst.instance_starting", "burst.ready"]
    assert all(e.subject == "burst_1" for e in record.events)


def test_interruption_then_replacement_resumes_and_returns_to_ready() -> None:
    ready = make_burst(state="ready", ready_at=T0 + 10)
    record, states = replay(ready, [
        obs(100, desired=2, ready=1, interrupted=("i-a",)),
        obs(101, desired=2, ready=1, interrupted=("i-a",)),  # same instance: counted once
        obs(105, desired=2, ready=1, starting=1, interrupted=("i-a",)),
        obs(160, desired=2, ready=2),
    ])
    assert states == ["interrupted", "interrupted", "resuming", "ready"]
    assert record.interruptions == 1
    interruption = [e for e in record.events if e.kind == "burst.spot_interruption"]
    assert len(interruption) == 1 and interruption[0].severity == "warning"
    assert interruption[0].data["instance_id"] == "i-a"


def test_losing_every_ready_replica_is_an_interruption_even_without_a_notice() -> None:
    ready = make_burst(state="ready", ready_at=T0 + 10)
    record, states = replay(ready, [obs(50, desired=2), obs(55, desired=2, starting=2),
                                    obs(90, desired=2, ready=2)])
    assert states == ["interrupted", "resuming", "ready"]
    assert record.interruptions == 0


def test_a_second_interruption_while_resuming_goes_back_to_interrupted() -> None:
    resuming = make_burst(state="resuming", ready_at=T0 + 10, seen_interrupted=("i-a",),
                          interruptions=1)
    record, states = replay(resuming, [obs(200, starting=1, interrupted=("i-a", "i-b"))])
    assert states == ["interrupted"]
    assert record.interruptions == 2


def test_duration_completes_and_the_end_is_final() -> None:
    record, states = replay(make_burst(duration_s=60.0, state="ready", ready_at=T0 + 5), [
        obs(59, ready=2), obs(60, ready=2), obs(61, ready=2, interrupted=("i-x",))])
    assert states == ["ready", "completed", "completed"]
    assert record.end_reason == "duration" and record.ended_at == T0 + 60
    assert record.interruptions == 0  # nothing is observed after the end
    assert record.events[-1].kind == "burst.completed"


def test_budget_spent_completes_the_burst() -> None:
    record, states = replay(make_burst(budget_usd=1.0), [
        obs(10, ready=1, spent_usd=0.5), obs(20, ready=1, spent_usd=1.0)])
    assert states == ["ready", "completed"]
    assert record.end_reason == "budget"
    assert record.cost_usd == 1.0
    assert record.progress(T0 + 20) == 1.0


def test_cost_never_goes_backwards() -> None:
    record, _ = replay(make_burst(), [obs(10, spent_usd=0.4), obs(20, spent_usd=0.1)])
    assert record.cost_usd == 0.4


def test_idle_timeout_counts_from_the_last_request_after_ready() -> None:
    burst = make_burst(duration_s=None, idle_timeout_s=100.0)
    record, states = replay(burst, [
        obs(5, starting=1),
        obs(500, ready=1),  # long boot: not idle, the clock starts at ready
        obs(550, ready=1, last_request_at=T0 + 540),
        obs(639, ready=1),
        obs(640, ready=1),
    ])
    assert states == ["instance_starting", "ready", "ready", "ready", "completed"]
    assert record.end_reason == "idle"


def test_cancel_completes_at_the_next_step() -> None:
    record, states = replay(make_burst(cancel_requested_at=T0 + 3), [obs(4, ready=1)])
    assert states == ["completed"]
    assert record.end_reason == "cancelled"


def test_deleted_pool_fails_the_burst() -> None:
    record, states = replay(make_burst(), [obs(4, pool_exists=False)])
    assert states == ["failed"]
    assert record.end_reason == "pool_deleted"
    assert record.events[-1].severity == "error"


def test_no_capacity_within_the_timeout_fails_with_the_last_error() -> None:
    record, states = replay(make_burst(), [
        obs(10, waiting_capacity=True, last_error="no spot capacity for g6.2xlarge"),
        obs(300, waiting_capacity=True, last_error="no spot capacity for g6.2xlarge"),
    ], capacity_timeout_s=300.0)
    assert states == ["waiting_capacity", "failed"]
    assert record.end_reason == "no_capacity"
    assert "g6.2xlarge" in record.events[-1].message
    # the same error twice is one capacity_error event
    assert [e.kind for e in record.events].count("burst.capacity_error") == 1


def test_progress_is_the_larger_of_time_and_budget_and_unknown_for_idle_only() -> None:
    burst = make_burst(duration_s=100.0, budget_usd=10.0, cost_usd=5.0)
    assert burst.progress(T0 + 20) == 0.5
    assert burst.progress(T0 + 80) == 0.8
    assert make_burst(duration_s=None, idle_timeout_s=60.0).progress(T0 + 5) is None


def test_doc_round_trip_keeps_facts_and_timeline() -> None:
    record, _ = replay(make_burst(), [obs(1, starting=1), obs(2, ready=1, interrupted=("i",))])
    assert BurstRecord.from_doc(record.to_doc()) == record
