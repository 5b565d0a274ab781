"""Capacity providers (`local`, `aws`) behind one interface; see base.py and docs/capacity.md."""

from typing import Any

from control_plane.providers.aws import AwsProvider, AwsProviderConfig
from control_plane.providers.base import (
    CapacityError,
    CapacityProvider,
    Instance,
    InsufficientCapacity,
    LaunchAttempt,
    LaunchRequest,
    LaunchResult,
    PriceCapExceeded,
    ProviderRejected,
    ProviderUnavailable,
)
from control_plane.providers.interruptions import DemotionTracker
from control_plane.providers.local import LocalProvider, LocalProviderConfig
from control_plane.providers.reconcile import (
    ReconcileAction,
    ReconcileRules,
    apply_reconcile,
    plan_reconcile,
    reconcile_once,
)


def make_provider(name: str, config: Any, **kwargs: Any) -> CapacityProvider:
    """Build the provider registered as `name` (`local`, `aws`) from its config dataclass."""
    return CapacityProvider.lookup(name)(config, **kwargs)  # type: ignore[call-arg]


__all__ = [
    "AwsProvider", "AwsProviderConfig", "CapacityError", "CapacityProvider", "DemotionTracker",
    "Instance", "InsufficientCapacity", "LaunchAttempt", "LaunchRequest", "LaunchResult",
    "LocalProvider", "LocalProviderConfig", "PriceCapExceeded", "ProviderRejected",
    "ProviderUnavailable", "ReconcileAction", "ReconcileRules", "apply_reconcile",
    "make_provider", "plan_reconcile", "reconcile_once",
]
