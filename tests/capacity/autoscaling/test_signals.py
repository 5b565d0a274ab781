"""Building the per-pool signal snapshot from worker records, instances and router reports."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from control_plane.autoscaling import Autoscaler, Replica, SignalTracker, choose_victims
from control_plane.autoscaling.windows import SampleWindow
from control_plane.providers.base import Instance
from fleet.catalog import Pool
from fleet.schemas import PoolDemand, RouterReport, WorkerRecord

SPEC = Pool(model_id="qwen", provider="aws", max_replicas=8, instance_types=["g5.2xlarge"])


def instance(instance_id: str, pool: str = "p", **overrides: Any) -> Instance:
    values: dict[str, Any] = dict(
        instance_id=instance_id, provider="aws", provider_instance_id=f"i-{instance_id}",
        pool=pool, instance_type="g5.2xlarge", zone="us-east-1a", market="spot",
        private_ip="10.0.0.9", launched_at=0.0, price_per_hour=0.6)
    values.update(overrides)
    return Instance(**values)


def worker(worker_id: str, instance_id: str, now: float, status: str = "ready",
           **overrides: Any) -> WorkerRecord:
    values: dict[str, Any] = dict(
        worker_id=worker_id, instance_id=instance_id, model_id="qwen", engine="vllm",
        url="http://10.0.0.9:8000", agent_url="http://10.0.0.9:8080", registered_at=now - 100,
        last_heartbeat=now - 1, status=status, provider="aws", pool="p",
        probe_passed_at=now - 1 if status == "ready" else None)
    values.update(overrides)
    return WorkerRecord(**values)


def report(now: float, requests: int = 0, cold: int = 0, waiting: int = 0,
           last_cold_at: float | None = None, router: str = "r1", started: float = 0.0,
           key: str = "p") -> RouterReport:
    return RouterReport(router_id=router, ts=now, started_at=started,
                        demand={key: PoolDemand(requests=requests, cold_requests=cold,
                                                waiting=waiting, last_cold_at=last_cold_at)})


def observe(tracker: SignalTracker, now: float, workers=(), instances=(), reports=(),
            **kw: Any):
    return tracker.observe("p", SPEC, workers=list(workers), instances=list(instances),
                           reports=list(reports), now=now, **kw)


def test_replica_states_are_derived_from_facts() -> None:
    now = 1000.0
    instances = [instance("booting"), instance("starting"), instance("ready"),
                 instance("draining"), instance("interrupted"), instance("other", pool="q")]
    workers = [
        worker("w-s", "starting", now, status="starting"),
        worker("w-r", "ready", now, queue_depth=3, inflight=2),
        worker("w-d", "draining", now, drain_requested_at=now - 5, drain_reason="scale_down"),
        worker("w-i", "interrupted", now, status="draining", drain_reason="spot_interruption"),
        worker("w-static", "box", now, provider="static", pool=None),
        worker("w-dead", "dead", now, last_heartbeat=now - 3600),
    ]
    signals = observe(SignalTracker(), now, workers, instances)
    states = {r.instance_id: (r.state, r.interrupted, r.managed) for r in signals.replicas}
    assert states == {
        "booting": ("booting", False, True), "starting": ("starting", False, True),
        "ready": ("ready", False, True), "draining": ("draining", False, True),
        "interrupted": ("draining", True, True), "box": ("ready", False, False)}
    assert len(signals.live) == 3 and signals.unmanaged_ready == 1 and signals.interrupted == 1
    assert signals.spend_per_hour == pytest.approx(1.8)
    assert signals.queue_depth == 3.0  # live workers only; the expired one is ignored


def test_queue_depth_is_smoothed_so_one_spike_is_damped() -> None:
    tracker = SignalTracker(half_life_s=15.0, window_s=60.0)
    for t in range(0, 60, 10):
        signals = observe(tracker, 1000.0 + t, [worker("w", "i", 1000.0 + t, queue_depth=4)],
                          [instance("i")])
    assert signals.queue_depth == pytest.approx(4.0)
    spike = observe(tracker, 1060.0, [worker("w", "i", 1060.0, queue_depth=100)],
                    [instance("i")])
    assert 4.0 < spike.queue_depth < 60.0


def test_latency_is_the_median_of_recent_readings() -> None:
    tracker = SignalTracker()
    readings = [400, 410, 5000, 420, 390]
    for k, value in enumerate(readings):
        now = 2000.0 + 10 * k
        signals = observe(tracker, now, [worker("w", "i", now, ttft_p95_ms=value)],
                          [instance("i")])
    assert signals.latency_p95_ms == pytest.approx(410.0)


def test_embeddings_latency_falls_back_to_end_to_end_and_gpu_is_averaged() -> None:
    now = 3000.0
    workers = [worker("w1", "a", now, e2e_p95_ms=80.0, gpu_util=0.5),
               worker("w2", "b", now, e2e_p95_ms=120.0, gpu_util=0.7)]
    signals = observe(SignalTracker(), now, workers, [instance("a"), instance("b")])
    assert signals.latency_p95_ms == pytest.approx(100.0)
    assert signals.gpu_util == pytest.approx(0.6)


def test_cold_demand_counts_increments_not_history() -> None:
    tracker = SignalTracker(cold_window_s=30.0)
    first = observe(tracker, 100.0, reports=[report(100.0, requests=50, cold=40)])
    assert first.cold_requests == 0 and not first.cold_demand  # a router's past is not new
    second = observe(tracker, 110.0, reports=[report(110.0, requests=53, cold=43,
                                                     last_cold_at=109.0, waiting=2)])
    assert (second.cold_requests, second.waiting, second.cold_recent) == (3, 2, True)
    # A restarted router (new started_at) starts its counters again: no negative increments.
    third = observe(tracker, 120.0, reports=[report(120.0, requests=1, cold=1, started=115.0)])
    assert third.cold_requests == 0
    # A stale report (older than report_ttl_s) is ignored.
    fourth = observe(tracker, 500.0, reports=[report(100.0, requests=999, cold=999,
                                                     waiting=7)])
    assert (fourth.cold_requests, fourth.waiting) == (0, 0)


def test_demand_reported_under_the_model_id_counts_for_the_pool() -> None:
    tracker = SignalTracker()
    signals = observe(tracker, 100.0, reports=[report(100.0, waiting=1, key="qwen")])
    assert signals.waiting == 1 and signals.cold_demand


def test_idle_clock_runs_from_the_last_traffic_or_first_sight() -> None:
    tracker = SignalTracker()
    assert observe(tracker, 100.0).idle_s == 0.0
    assert observe(tracker, 400.0).idle_s == 300.0  # never any traffic: since first seen
    busy = observe(tracker, 500.0, [worker("w", "i", 500.0, inflight=1)], [instance("i")])
    assert busy.idle_s == 0.0
    quiet = observe(tracker, 800.0, [worker("w", "i", 800.0)], [instance("i")])
    assert quiet.idle_s == 300.0
    observe(tracker, 810.0, reports=[report(810.0, requests=5)])
    assert observe(tracker, 820.0, reports=[report(820.0, requests=6)]).idle_s == 0.0


def test_a_pools_first_requests_count_when_the_router_was_already_reporting() -> None:
    # Recorded in the autoscaling benchmark: a pool idle since creation got its first request,
    # the router listed the pool for the first time, the increment was taken for history and
    # the pool scaled to zero under its traffic.
    tracker = SignalTracker()
    spec = dataclasses.replace(SPEC, scale_to_zero_after_s=5.0)
    w = [worker("w", "i", 100.0)]
    idle = tracker.observe("p", spec, workers=w, instances=[instance("i")], now=100.0,
                           reports=[report(100.0, requests=7, key="other")])
    assert idle.idle_s == 0.0
    w = [worker("w", "i", 110.0)]
    still = tracker.observe("p", spec, workers=w, instances=[instance("i")], now=110.0,
                            reports=[report(110.0, requests=7, key="other")])
    assert still.idle_s == 10.0
    w = [worker("w", "i", 111.0)]
    first = tracker.observe("p", spec, workers=w, instances=[instance("i")], now=111.0,
                            reports=[RouterReport(router_id="r1", ts=111.0, started_at=0.0,
                                                  demand={"other": PoolDemand(requests=7),
                                                          "p": PoolDemand(requests=1)})])
    assert first.idle_s == 0.0
    decision = Autoscaler.make("target_tracking").decide(first, 111.0)
    assert decision.target == 1 and not decision.drain


def test_a_router_seen_for_the_first_time_brings_no_increment() -> None:
    tracker = SignalTracker()
    observe(tracker, 100.0)
    assert observe(tracker, 110.0, reports=[report(110.0, requests=9)]).idle_s == 10.0


def test_window_smoothers() -> None:
    window = SampleWindow(window_s=60.0, half_life_s=10.0)
    assert window.ewma(0.0) is None and window.percentile(50, 0.0) is None
    window.add(0.0, 0.0)
    window.add(10.0, 10.0)
    assert window.ewma(10.0) == pytest.approx(10.0 * 1 / 1.5)
    assert window.percentile(50, 10.0) == pytest.approx(5.0)
    assert window.ewma(100.0) is None  # everything aged out of the window


def test_victims_prefer_booting_then_starting_then_least_loaded_and_keep_spread() -> None:
    replicas = [
        Replica("r-busy", "ready", worker_id="w1", instance_type="g5", zone="a", queue_depth=9),
        Replica("r-idle-a", "ready", worker_id="w2", instance_type="g5", zone="a"),
        Replica("r-idle-b", "ready", worker_id="w3", instance_type="g5", zone="b"),
        Replica("r-starting", "starting", worker_id="w4", instance_type="g5", zone="c"),
        Replica("r-booting", "booting", instance_type="g5", zone="c"),
        Replica("r-draining", "draining", worker_id="w5", instance_type="g5", zone="a"),
        Replica("r-static", "ready", worker_id="w6", managed=False),
    ]
    orders = choose_victims(replicas, 4)
    assert [o.instance_id for o in orders] == ["r-booting", "r-starting", "r-idle-a",
                                                "r-idle-b"]
    assert orders[0].release_now and not orders[1].release_now
    assert orders[0].worker_id is None and orders[1].worker_id == "w4"
    assert len(choose_victims(replicas, 10)) == 5  # never the draining or unmanaged ones


def test_arrival_rate_comes_from_known_counters_and_served_rate_from_busy_replicas() -> None:
    tracker = SignalTracker()
    busy = worker("w1", "a", 100.0, queue_depth=6, requests_per_s=4.0)
    idle = worker("w2", "b", 100.0, queue_depth=0, requests_per_s=0.5)  # not saturated
    starting = worker("w3", "c", 100.0, status="starting", requests_per_s=9.0)
    first = observe(tracker, 100.0, [busy, idle, starting], reports=[report(100.0, requests=500)])
    assert first.arrival_rate is None  # a router's history is not a rate
    assert first.served_per_replica == 4.0  # only ready replicas with work queued
    second = observe(tracker, 110.0, [busy, idle], reports=[report(110.0, requests=560)])
    assert second.arrival_rate == pytest.approx(6.0)  # 60 requests in 10 s
    assert observe(tracker, 120.0, [idle]).served_per_replica is None
