"""Autoscaling: signals per pool -> a policy's decision (data) -> the control plane's executor."""

from control_plane.autoscaling.policies import (
    DEFAULT_POLICY,
    QueueDepthOnly,
    Static,
    TargetTracking,
)
from control_plane.autoscaling.policy import (
    Autoscaler,
    AutoscalerConfig,
    Recommendation,
    ScaleDecision,
)
from control_plane.autoscaling.signals import PoolSignals, Replica, SignalTracker
from control_plane.autoscaling.stabilization import StabilizationConfig, Stabilizer
from control_plane.autoscaling.victims import DrainOrder, choose_victims

__all__ = [
    "DEFAULT_POLICY", "Autoscaler", "AutoscalerConfig", "DrainOrder", "PoolSignals",
    "QueueDepthOnly", "Recommendation", "Replica", "ScaleDecision", "SignalTracker",
    "StabilizationConfig", "Stabilizer", "Static", "TargetTracking", "choose_victims",
]
