"""Autoscaling policies on recorded signal series; time is injected, nothing sleeps."""

from __future__ import annotations

from typing import Any

import pytest

from control_plane.autoscaling import (
    Autoscaler,
    AutoscalerConfig,
    PoolSignals,
    Replica,
    StabilizationConfig,
)
from fleet.catalog import Pool
from tests.capacity.autoscaling.fleet_sim import SimFleet, changes


def pool(**overrides: Any) -> Pool:
    values: dict[str, Any] = dict(model_id="m", min_replicas=0, max_replicas=10,
                                  target_queue_depth=8.0, scale_to_zero_after_s=600.0)
    values.update(overrides)
    return Pool(**values)


def ready(n: int, *, price: float | None = 1.0, queue: int = 0, start: int = 0) -> list[Replica]:
    return [Replica(f"i{start + k}", "ready", worker_id=f"w{start + k}", instance_type="g5",
                    zone="abc"[(start + k) % 3], price_per_hour=price, launched_at=float(k),
                    queue_depth=queue) for k in range(n)]


def signals(replicas: list[Replica], spec: Pool | None = None, **overrides: Any) -> PoolSignals:
    values: dict[str, Any] = dict(pool="p", spec=spec or pool(), at=0.0,
                                  replicas=tuple(replicas), next_price_per_hour=1.0)
    values.update(overrides)
    return PoolSignals(**values)


def policy(name: str = "target_tracking", **stab: Any) -> Autoscaler:
    return Autoscaler.make(name, config=AutoscalerConfig(
        stabilization=StabilizationConfig(**stab)))


# series ---------------------------------------------------------------------------------------

def test_surge_scales_up_at_once_within_the_step_limit_and_max() -> None:
    fleet = SimFleet(pool(max_replicas=12))
    fleet.add(0, 1, ready=True)
    scaler = policy()
    decisions = fleet.run(scaler, lambda t: 8 if t < 60 else 200, start=0, end=200)
    first_up = next(d for d in decisions if d.action == "scale_up")
    assert first_up.at == 60  # the first tick that sees the surge
    assert first_up.target == 5  # +max(4, 100% of 1)
    assert "step limited" in first_up.reason
    assert max(d.target for d in decisions) == 12  # wants 25, capped at max_replicas
    assert any("max_replicas 12" in d.reason for d in decisions)


def test_steady_load_settles_once_and_never_moves_again() -> None:
    fleet = SimFleet(pool())
    fleet.add(0, 1, ready=True)
    decisions = fleet.run(policy(), lambda t: 20, start=0, end=1800)
    assert changes(decisions) == [(0, 1, 3)]
    assert decisions[-1].target == 3


def test_oscillating_load_does_not_flap_thanks_to_the_down_window() -> None:
    def load(t: float) -> float:  # 40 then 8 requests in the system, a minute each
        return 40 if (t // 60) % 2 == 0 else 8

    fleet = SimFleet(pool(), boot_s=20)
    fleet.add(0, 5, ready=True)
    stable = fleet.run(policy(), load, start=0, end=1800)
    assert changes(stable) == []  # holds 5 throughout

    naive = SimFleet(pool(), boot_s=20)
    naive.add(0, 5, ready=True)
    flapping = naive.run(policy(down_window_s=0, down_periods=1), load, start=0, end=1800)
    assert len(changes(flapping)) >= 20  # what the window prevents


def test_scale_down_waits_for_the_down_window_and_consecutive_periods() -> None:
    fleet = SimFleet(pool())
    fleet.add(0, 4, ready=True)
    decisions = fleet.run(policy(down_window_s=300, down_periods=3),
                          lambda t: 32 if t < 100 else 8, start=0, end=700)
    [(when, before, after)] = changes(decisions)
    assert (before, after) == (4, 1)
    assert when == 100 + 300  # the last high recommendation leaves the window
    held = [d for d in decisions if 100 <= d.at < 400]
    assert all("down window" in d.reason for d in held)


def test_up_window_delays_scale_up_until_the_load_persists() -> None:
    fleet = SimFleet(pool())
    fleet.add(0, 1, ready=True)
    decisions = fleet.run(policy(up_window_s=60), lambda t: 8 if t < 100 else 40,
                          start=0, end=300)
    first_up = next(d for d in decisions if d.action == "scale_up")
    assert first_up.at == 160
    assert any("up window" in d.reason for d in decisions if 100 <= d.at < 160)


def test_scale_up_needs_consecutive_periods_when_configured() -> None:
    scaler = policy(up_periods=2)
    busy = signals(ready(1), queue_depth=40.0)
    first = scaler.decide(busy, 0)
    assert first.action == "hold" and "consecutive periods" in first.reason
    assert scaler.decide(busy, 10).target == 5


# scale from and to zero -----------------------------------------------------------------------

def test_cold_demand_scales_from_zero_immediately() -> None:
    scaler = policy(up_window_s=300, up_periods=3)  # even with slow scale-up settings
    decision = scaler.decide(signals([], waiting=2), now=0)
    assert (decision.current, decision.target, decision.launch) == (0, 1, 1)
    assert "cold demand" in decision.reason
    assert decision.inputs["waiting"] == 2

    assert policy().decide(signals([], cold_recent=True), 0).target == 1
    assert policy().decide(signals([], cold_requests=3), 0).target == 1
    assert policy().decide(signals([]), 0).target == 0  # no demand, min 0: stays at zero


def test_idle_pool_scales_to_zero_after_the_idle_time_without_the_down_window() -> None:
    replicas = ready(2)
    quick = policy(down_window_s=0, down_periods=1)
    kept = quick.decide(signals(replicas, queue_depth=0.0, idle_s=599), 0)
    assert kept.target == 1  # one replica stays while the pool is not idle long enough

    scaler = policy()  # default 300 s down window: it must not delay scale-to-zero
    for t in range(0, 300, 10):
        assert scaler.decide(signals(replicas[:1], queue_depth=0.0, idle_s=300 + t), t).target == 1
    gone = scaler.decide(signals(replicas[:1], queue_depth=0.0, idle_s=600), 300)
    assert (gone.target, gone.action) == (0, "scale_down")
    assert [d.instance_id for d in gone.drain] == [replicas[0].instance_id]
    assert "idle for 600s" in gone.reason


def test_scale_to_zero_disabled_keeps_one_replica() -> None:
    spec = pool(scale_to_zero_after_s=None)
    scaler = policy(down_window_s=0, down_periods=1)
    decision = scaler.decide(signals(ready(1), spec, queue_depth=0.0, idle_s=10**6), 0)
    assert decision.target == 1


def test_min_replicas_is_a_floor_reached_at_once() -> None:
    decision = policy(up_periods=5).decide(signals([], pool(min_replicas=2)), 0)
    assert (decision.target, decision.launch) == (2, 2)
    idle = policy().decide(signals(ready(2), pool(min_replicas=2), queue_depth=0.0,
                                   idle_s=10**6), 0)
    assert idle.target == 2


# metrics --------------------------------------------------------------------------------------

def test_ttft_slo_breach_adds_replicas_in_proportion() -> None:
    spec = pool(ttft_p95_slo_ms=500.0)
    decision = policy().decide(signals(ready(2), spec, queue_depth=8.0,
                                       latency_p95_ms=1000.0), 0)
    assert decision.target == 4
    assert decision.inputs["deciding_signal"] == "latency"
    assert "over the 500 ms SLO" in decision.reason


def test_latency_close_to_the_slo_blocks_scale_down() -> None:
    spec = pool(ttft_p95_slo_ms=500.0)
    scaler = policy(down_window_s=0, down_periods=1)
    near = scaler.decide(signals(ready(4), spec, queue_depth=4.0, latency_p95_ms=450.0), 0)
    assert near.target == 4 and "close to the 500 ms SLO" in near.reason
    far = scaler.decide(signals(ready(4), spec, queue_depth=4.0, latency_p95_ms=100.0), 10)
    assert far.target == 1


def test_gpu_utilisation_over_target_adds_replicas() -> None:
    spec = pool(gpu_util_target=0.6)
    decision = policy().decide(signals(ready(2), spec, queue_depth=8.0, gpu_util=0.9), 0)
    assert decision.target == 3 and decision.inputs["deciding_signal"] == "gpu_util"
    within = policy().decide(signals(ready(2), spec, queue_depth=16.0, gpu_util=0.63), 0)
    assert within.target == 2  # 5% over target: inside the tolerance


def test_queue_depth_only_ignores_latency_and_gpu() -> None:
    spec = pool(ttft_p95_slo_ms=500.0, gpu_util_target=0.5)
    busy = signals(ready(2), spec, queue_depth=16.0, latency_p95_ms=5000.0, gpu_util=1.0)
    assert policy("queue_depth_only").decide(busy, 0).target == 2
    assert policy("target_tracking").decide(busy, 0).target == 6  # wants 20, step +4


def test_booting_replicas_count_so_a_lasting_queue_does_not_launch_again() -> None:
    booting = [Replica("b1", "booting"), Replica("b2", "booting")]
    decision = policy().decide(signals(ready(1) + booting, queue_depth=24.0), 0)
    assert (decision.current, decision.target, decision.launch) == (3, 3, 0)


def test_no_serving_replica_and_no_demand_holds() -> None:
    decision = policy().decide(signals([Replica("b1", "booting")]), 0)
    assert decision.action == "hold" and "no load signal" in decision.reason


# spending cap and budget ----------------------------------------------------------------------

def test_spending_cap_stops_scale_up_at_the_cap() -> None:
    spec = pool(max_price_per_hour=2.0)
    decision = policy().decide(signals(ready(1, price=0.9), spec, queue_depth=40.0,
                                       next_price_per_hour=0.9), 0)
    assert decision.target == 2  # 0.9 spent + 0.9 more fits 2.0; a third would not
    assert "spending cap $2.00/h" in decision.reason


def test_unknown_price_under_a_cap_does_not_scale_up() -> None:
    spec = pool(max_price_per_hour=2.0)
    decision = policy().decide(signals(ready(1), spec, queue_depth=40.0,
                                       next_price_per_hour=None), 0)
    assert decision.target == 1 and "unknown" in decision.reason


def test_over_the_cap_sheds_the_most_expensive_replicas() -> None:
    spec = pool(max_price_per_hour=2.0)
    replicas = ready(3, price=0.9)
    decision = policy().decide(signals(replicas, spec, queue_depth=24.0), 0)
    assert decision.target == 2 and len(decision.drain) == 1
    assert "over the spending cap" in decision.reason


def test_spent_burst_budget_does_not_grow() -> None:
    decision = policy().decide(signals(ready(1), queue_depth=40.0, budget_remaining_usd=0.0), 0)
    assert decision.target == 1 and "budget spent" in decision.reason


# interruptions, static, decisions as data -----------------------------------------------------

def test_spot_interruption_starts_a_replacement_before_the_old_one_is_gone() -> None:
    scaler = policy()
    replicas = ready(3, queue=8)
    assert scaler.decide(signals(replicas, queue_depth=24.0), 0).target == 3
    interrupted = Replica("i0", "draining", worker_id="w0", instance_type="g5", zone="a",
                          interrupted=True)
    after = scaler.decide(signals([interrupted, *replicas[1:]], queue_depth=16.0), 10)
    assert (after.current, after.target, after.launch) == (2, 3, 1)
    assert "replacing 1 interrupted replica" in after.reason


def test_static_policy_holds_a_fixed_size_within_max_and_cap() -> None:
    scaler = Autoscaler.make("static", replicas=3)
    assert scaler.decide(signals([], queue_depth=None), 0).target == 3
    assert scaler.decide(signals(ready(5), queue_depth=500.0), 10).target == 3
    assert scaler.decide(signals([], pool(max_replicas=2)), 20).target == 2
    assert Autoscaler.make("static").decide(signals([], pool(min_replicas=1)), 0).target == 1


def test_decision_is_data_with_inputs_reason_and_an_event() -> None:
    decision = policy().decide(signals(ready(1), queue_depth=40.0), 42.0)
    assert decision.action == "scale_up" and decision.policy == "target_tracking"
    assert decision.inputs["queue_depth"] == 40.0 and decision.inputs["recommended"] == 5
    event = decision.event()
    assert event.kind == "autoscaler.scale_up" and event.subject == "p" and event.ts == 42.0
    assert "queue depth 40.0" in event.message and event.data["launch"] == 4


def test_registry_names_the_policies_and_refuses_unknown_ones() -> None:
    assert {"target_tracking", "queue_depth_only", "static"} <= set(Autoscaler.registered())
    with pytest.raises(KeyError, match="unknown autoscaler"):
        Autoscaler.make("nope")


def test_replicas_of_unknown_price_count_at_the_next_price_under_a_cap() -> None:
    spec = pool(max_price_per_hour=2.0)
    decision = policy().decide(signals(ready(2, price=None), spec, queue_depth=40.0,
                                       next_price_per_hour=0.9), 0)
    assert decision.target == 2  # 2 x 0.9 estimated: a third would pass the cap
