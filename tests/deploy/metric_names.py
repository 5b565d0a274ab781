"""Which metric names exist: exported by a service's code (router, control plane with its
capacity manager and bursts, agent) or recorded by the shipped rules. Used to check that rules,
dashboards and scalers read real series."""

from __future__ import annotations

import functools
import re

import yaml

from tests.support.processes import REPO_ROOT

RULE_FILES = sorted((REPO_ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
SERVICE_SOURCES = ("router", "control_plane", "worker_agent")
_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


@functools.cache
def exported_metrics() -> frozenset[str]:
    exported: set[str] = set()
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
