"""Pending capacity (pending.py) on recorded flow series: replicas that are booting count as
capacity, and a backlog the fleet drains before a new replica could boot launches nothing.

FlowFleet integrates arrivals - service between ticks, so the queue grows on the ready replicas
while new ones boot, exactly the stock the unguarded policy kept chasing. Each scenario runs the
same series with the guard off to show what it prevents.
"""

from __future__ import annotations

from typing import Any

from control_plane.autoscaling import (
    Autoscaler,
    AutoscalerConfig,
    Replica,
    ScaleDecision,
    StabilizationConfig,
)
from fleet.catalog import Pool
from tests.capacity.autoscaling.fleet_sim import FlowFleet, changes
from tests.capacity.autoscaling.test_policy import ready, signals


def pool(**overrides: Any) -> Pool:
    values: dict[str, Any] = dict(model_id="m", min_replicas=0, max_replicas=10,
                                  target_queue_depth=4.0, scale_to_zero_after_s=600.0)
    values.update(overrides)
    return Pool(**values)


def policy(pending: bool = True, **stab: Any) -> Autoscaler:
    return Autoscaler.make("target_tracking", config=AutoscalerConfig(
        stabilization=StabilizationConfig(**stab), count_pending_capacity=pending))


def plateau(t: float) -> float:  # 2 req/s, then 7 req/s: two replicas of 4 req/s serve it
    return 2.0 if t < 60 else 7.0


def run_plateau(pending: bool) -> list[ScaleDecision]:
    fleet = FlowFleet(pool(), boot_s=60)
    fleet.add(0, 1, ready=True)
    return fleet.run(policy(pending), plateau, start=0, end=600)


def test_boot_time_plateau_does_not_launch_more_while_replicas_are_starting() -> None:
    decisions = run_plateau(pending=True)
    booting = [d for d in decisions if 60 <= d.at < 120]  # the second replica boots
    assert booting[0].target == 2  # the arrivals need two: launched at once
    assert all(d.target == 2 and d.launch == 0 for d in booting[1:])
    held = booting[1]
    assert held.inputs["starting"] == 1 and held.inputs["queue_depth"] > 8
    assert "1 replica(s) starting count as capacity" in held.reason
    assert "holding" in held.reason
    assert max(d.target for d in decisions) <= 3  # one more only for the backlog built meanwhile

    unguarded = run_plateau(pending=False)
    assert max(d.target for d in unguarded) == 10  # chased the growing queue to max_replicas


def test_backlog_left_after_the_boot_sizes_the_last_step_by_flows() -> None:
    decisions = run_plateau(pending=True)
    # Ready at 120 with ~180 requests backlogged and 1 req/s spare: minutes to drain, so it
    # adds the replicas that serve 7 req/s and drain the backlog within one more boot (60 s).
    assert changes(decisions)[:2] == [(60, 1, 2), (120, 2, 3)]
    step = next(d for d in decisions if d.at == 120)
    assert "sized by flows" in step.reason and step.inputs["boot_s"] == 60


def test_backlog_released_after_scale_from_zero_is_drained_not_chased() -> None:
    def run(pending: bool) -> list[ScaleDecision]:
        fleet = FlowFleet(pool(), boot_s=30, per_replica_rps=4.0)
        scaler = policy(pending)
        out = []
        for k in range(31):
            t = 10.0 * k
            load = 1.5 if t < 200 else 0.0  # a short session; the router holds it while cold
            cold = {"waiting": 3} if not fleet.replicas else {}
            out.append(fleet.step(scaler, t, load, **cold))
        return out

    decisions = run(pending=True)
    assert changes(decisions)[0] == (0, 0, 1)  # scale from zero on the cold request
    assert max(d.target for d in decisions) == 1  # 1.5 req/s: one replica drains the backlog
    released = next(d for d in decisions if d.at == 30)  # first tick with the replica ready
    assert released.inputs["queue_depth"] > 4 * 1.5  # the released backlog
    assert "drains in" in released.reason and "holding" in released.reason

    assert max(d.target for d in run(pending=False)) > 1  # what the guard prevents


def test_real_surge_during_a_boot_still_scales_up_promptly() -> None:
    fleet = FlowFleet(pool(max_replicas=20), boot_s=60)
    fleet.add(0, 2, ready=True)

    def surge(t: float) -> float:  # 6 req/s, a third replica launched, then a 40 req/s surge
        return 6.0 if t < 50 else 12.0 if t < 80 else 40.0

    decisions = fleet.run(policy(), surge, start=0, end=200)
    at_surge = next(d for d in decisions if d.at == 80)
    assert at_surge.inputs["starting"] > 0  # replicas were already booting
    assert at_surge.action == "scale_up"  # arrivals beyond current + starting: no hold
    reached = next(d.at for d in decisions if d.target >= 10)  # ceil(40 / 4.4)
    assert reached <= 90  # within two ticks of the surge (step limit +max(4, 100%))


def test_oscillating_flows_do_not_flap() -> None:
    def load(t: float) -> float:  # 14 then 3 req/s, a minute each
        return 14.0 if (t // 60) % 2 == 0 else 3.0

    fleet = FlowFleet(pool(), boot_s=20)
    fleet.add(0, 4, ready=True)
    decisions = fleet.run(policy(), load, start=0, end=1800)
    assert changes(decisions) == []  # 4 replicas serve the peaks; the down window holds them


def test_guard_needs_both_rates_and_never_lowers_a_floor() -> None:
    booting = [Replica("b1", "booting")]
    # No rates (no router report yet): no evidence, the recommendation stands.
    bare = policy().decide(signals(ready(1) + booting, spec=pool(), queue_depth=40.0), 0)
    assert bare.target == 6  # ceil(40 / 4) = 10, step limited to +max(4, 2)
    assert "count as capacity" not in bare.reason
    # min_replicas is reached at once even if the flows would need fewer.
    floor = policy().decide(signals(ready(1) + booting, spec=pool(min_replicas=5),
                                    queue_depth=40.0, arrival_rate=1.0,
                                    served_per_replica=4.0), 0)
    assert floor.target == 5


def test_decision_inputs_carry_the_flows() -> None:
    decision = policy().decide(signals(ready(1, queue=5) + [Replica("b1", "booting")],
                                       spec=pool(), queue_depth=30.0, arrival_rate=3.0,
                                       served_per_replica=4.0), 0)
    assert (decision.current, decision.target) == (2, 2)
    for key, value in {"starting": 1, "arrival_rate": 3.0, "served_per_replica": 4.0}.items():
        assert decision.inputs[key] == value


def test_stale_latency_with_no_work_queued_launches_nothing() -> None:
    stale = dict(spec=pool(ttft_p95_slo_ms=1000.0), latency_p95_ms=4800.0, queue_depth=0.0)
    idle = policy().decide(signals(ready(3), arrival_rate=2.0, **stale), 0)
    assert (idle.current, idle.target) == (3, 3)
    assert "no ready replica has work queued" in idle.reason
    # Busy replicas that report no completion rate: no evidence, the latency breach scales up.
    busy = policy().decide(signals(ready(3, queue=2), arrival_rate=2.0, **stale), 0)
    assert busy.target > 3


def test_a_replica_with_no_rate_yet_is_taken_at_the_pools_last_measured_rate() -> None:
    scaler = policy()
    # Earlier traffic: a busy replica measured at 4 req/s, then it left (scaled to zero).
    scaler.decide(signals(ready(1, queue=3), spec=pool(), queue_depth=3.0, arrival_rate=3.0,
                          served_per_replica=4.0), 0)
    # Back from zero: the new replica got the router's backlog but has no rate window yet.
    again = signals(ready(1, queue=12, start=5), spec=pool(), queue_depth=12.0,
                    arrival_rate=2.0, served_per_replica=None)
    decision = scaler.decide(again, 600)
    assert decision.target == 1
    assert "last measured" in decision.reason
    assert policy().decide(again, 600).target == 3  # a fresh policy has no rate: no evidence
