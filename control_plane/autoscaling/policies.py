"""The autoscaling policies, registered by name.

    target_tracking   (default) queue depth per replica, p95 latency vs the SLO, GPU utilisation;
                      the largest recommendation wins, like the HPA with several metrics
    queue_depth_only  queue depth per replica alone (KEDA-style), for comparison
    static            a fixed number of replicas (`replicas`, else the pool's min_replicas)

Formulas (HPA-style, `serving` = ready replicas, managed or not; tolerance 10%):

    queue      ceil(total queue depth / target_queue_depth)        (held if within tolerance)
    latency    p95 > SLO x 1.1:  ceil(serving x p95 / SLO)
               p95 >= SLO x 0.8: serving (hold: close to the SLO, do not shrink)
               else:             no opinion
    gpu util   ceil(serving x util / gpu_util_target)              (held if within tolerance)

Latency is TTFT p95 where the engine reports it, end-to-end p95 otherwise (embeddings), compared
with the pool's `ttft_p95_slo_ms`.
"""

from __future__ import annotations

import math
from typing import Any

from control_plane.autoscaling.policy import (
    Autoscaler,
    AutoscalerConfig,
    Recommendation,
    ScaleDecision,
)
from control_plane.autoscaling.signals import PoolSignals

DEFAULT_POLICY = "target_tracking"


def _ceil(x: float) -> int:
    return math.ceil(x - 1e-9)


class TargetTracking(Autoscaler, name="target_tracking"):
    use_latency = True
    use_gpu = True

    def recommend(self, s: PoolSignals) -> Recommendation:
        spec = s.spec
        serving = len(s.ready)
        tol = self.config.tolerance
        proposals: dict[str, tuple[int, str]] = {}
        inputs: dict[str, Any] = {"serving": serving}

        if s.queue_depth is not None:
            per_replica = spec.target_queue_depth
            need = _ceil(s.queue_depth / per_replica)
            if serving > 0 and abs(s.queue_depth / (serving * per_replica) - 1) <= tol:
                need = serving
            proposals["queue_depth"] = (
                need, f"queue depth {s.queue_depth:.1f} for {per_replica:g}/replica -> {need}")
            inputs["proposal_queue_depth"] = need

        slo = spec.ttft_p95_slo_ms
        if self.use_latency and slo and s.latency_p95_ms is not None and serving > 0:
            ratio = s.latency_p95_ms / slo
            if ratio > 1 + tol:
                need = _ceil(serving * ratio)
                proposals["latency"] = (need, f"p95 latency {s.latency_p95_ms:.0f} ms over the "
                                              f"{slo:.0f} ms SLO -> {need}")
            elif ratio >= self.config.latency_headroom:
                proposals["latency"] = (serving, f"p95 latency {s.latency_p95_ms:.0f} ms close "
                                                 f"to the {slo:.0f} ms SLO -> hold {serving}")
            if "latency" in proposals:
                inputs["proposal_latency"] = proposals["latency"][0]

        target_util = spec.gpu_util_target
        if self.use_gpu and target_util and s.gpu_util is not None and serving > 0:
            ratio = s.gpu_util / target_util
            need = serving if abs(ratio - 1) <= tol else _ceil(serving * ratio)
            proposals["gpu_util"] = (need, f"GPU utilisation {s.gpu_util:.0%} for "
                                           f"{target_util:.0%} -> {need}")
            inputs["proposal_gpu_util"] = need

        if not proposals:
            return Recommendation(None, "no load signal (no serving replica yet)", inputs)
        signal, (need, why) = max(proposals.items(), key=lambda item: item[1][0])
        inputs["deciding_signal"] = signal
        return Recommendation(need, why, inputs)


class QueueDepthOnly(TargetTracking, name="queue_depth_only"):
    use_latency = False
    use_gpu = False


class Static(Autoscaler, name="static"):
    """A fixed size: no metrics, no stabilization; max_replicas and the spending cap still hold."""

    def __init__(self, config: AutoscalerConfig | None = None, *,
                 replicas: int | None = None) -> None:
        super().__init__(config)
        if replicas is not None and replicas < 0:
            raise ValueError("replicas must be >= 0")
        self.replicas = replicas

    def recommend(self, s: PoolSignals) -> Recommendation:
        wanted = self.replicas if self.replicas is not None else s.spec.min_replicas
        return Recommendation(wanted, f"static: {wanted} replica(s)")

    def decide(self, signals: PoolSignals, now: float) -> ScaleDecision:
        current = len(signals.live)
        rec = self.recommend(signals)
        assert rec.replicas is not None
        notes: list[str] = []
        target = min(rec.replicas, signals.spec.max_replicas)
        target = self._spending_cap(signals, current, target, notes)
        stabilized = self.stabilizer.apply(signals.pool, current, target, now,
                                           bypass_up=True, bypass_down=True)
        self.stabilizer.record_target(signals.pool, target)
        return self._decision(signals, now, current, target, rec, stabilized, notes)
