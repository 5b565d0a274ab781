"""The control plane's autoscaling policy and signal smoothing are settings, read once."""

from __future__ import annotations

import dataclasses

import pytest

from control_plane.autoscaling import Autoscaler, QueueDepthOnly, Static, TargetTracking
from control_plane.services import ControlPlane
from control_plane.settings import ControlPlaneSettings
from fleet.memory_store import MemoryFleetStore
from fleet.settings import SettingsError, load_settings


def test_the_policy_setting_offers_every_registered_policy() -> None:
    field = {f.name: f for f in dataclasses.fields(ControlPlaneSettings)}["autoscale_policy"]
    assert set(field.metadata["option"].choices) == set(Autoscaler.registered())


def test_an_unknown_policy_is_refused_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="CONTROL_PLANE_AUTOSCALE_POLICY"):
        load_settings(ControlPlaneSettings, [], {"CONTROL_PLANE_AUTOSCALE_POLICY": "bogus"})


@pytest.mark.parametrize(("name", "kind"), [("target_tracking", TargetTracking),
                                            ("queue_depth_only", QueueDepthOnly),
                                            ("static", Static)])
async def test_the_capacity_manager_runs_the_configured_policy(name: str, kind: type) -> None:
    settings = load_settings(ControlPlaneSettings, ["--autoscale-policy", name,
                                                    "--autoscale-signal-window", "2",
                                                    "--autoscale-signal-half-life", "0.5"], {})
    cp = ControlPlane(settings, MemoryFleetStore(), providers={})
    try:
        assert type(cp.capacity.autoscaler) is kind
        assert cp.capacity.tracker.window_s == 2.0
        assert cp.capacity.tracker.half_life_s == 0.5
    finally:
        await cp.http.close()


def test_the_default_policy_is_target_tracking() -> None:
    assert load_settings(ControlPlaneSettings, [], {}).autoscale_policy == "target_tracking"
