"""Which metric names exist: exported by a service's code, agreed for the capacity manager, or
recorded by the shipped rules. Used to check that rules, dashboards and scalers read real series."""

from __future__ import annotations

import functools
import re

import yaml

from tests.support.processes import REPO_ROOT

RULE_FILES = sorted((REPO_ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
SERVICE_SOURCES = ("router", "control_plane", "worker_agent")
# Exported by the control plane's capacity manager and bursts (names agreed between branches in
# the interface notes; the capacity code lands separately from this deployment work).
AGREED_CAPACITY_METRICS = {
    "flotilla_pool_desired_replicas", "flotilla_pool_ready_replicas",
    "flotilla_pool_starting_replicas", "flotilla_pool_queue_depth",
    "flotilla_pool_ttft_p95_seconds", "flotilla_pool_ttft_slo_seconds",
    "flotilla_pool_cost_per_hour_usd", "flotilla_pool_max_cost_per_hour_usd",
    "flotilla_cost_usd_total", "flotilla_spot_interruptions_total",
    "flotilla_autoscaler_decisions_total", "flotilla_launch_failures_total",
    "flotilla_route_ready_pools", "flotilla_burst_state", "flotilla_burst_cost_usd",
}
_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


@functools.cache
def exported_metrics() -> frozenset[str]:
    exported = set(AGREED_CAPACITY_METRICS)
    for package in SERVICE_SOURCES:
        for source in (REPO_ROOT / package).rglob("*.py"):
            exported.update(re.findall(r"flotilla_[a-z0-9_]+", source.read_text()))
    control_plane = (REPO_ROOT / "control_plane" / "metrics.py").read_text()
    exported.update(f"flotilla_control_plane_{name}"
                    for name in re.findall(r'f"\{P\}_([a-z0-9_]+)"', control_plane))
    return frozenset(exported)


@functools.cache
def recorded_series() -> frozenset[str]:
    names: set[str] = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return frozenset(names)


def unknown_names(expression: str) -> set[str]:
    """Names in `expression` that no service exports and no rule records."""
    exported = exported_metrics()
    recorded = recorded_series()
    unknown = set()
    for name in re.findall(r"\bflotilla_[a-z0-9_]+", expression):
        if name in exported or any(name.endswith(s) and name[:-len(s)] in exported
                                   for s in _SUFFIXES):
            continue
        unknown.add(name)
    unknown.update(n for n in re.findall(r"\bflotilla:[a-z0-9_:]+", expression)
                   if n not in recorded)
    return unknown
