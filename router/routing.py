"""From a request's `model` to an ordered plan of targets, over one fleet snapshot.

    routes[model] exists   its targets in order:
                             {"pool": p}      ready workers of pool p (its own, and hand-enrolled
                                              workers of its model); model rewritten to the
                                              pool's model_id when it differs
                             {"upstream": u}  one endpoint; `Authorization: Bearer $api_key_env`
                                              read at call time; model rewritten if asked
    no route, pools serve the model         those pools, by name
    no route, no pool, workers serve it     its ready workers (target `model:<id>`)
    none of these                           404, unless the model was served before (then the
                                            plan is empty and the request meets the cold wait)

Plans depend only on the snapshot, so they are cached in it per model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from urllib.parse import urlsplit

from fleet.catalog import AutoTarget, CacheOptions, PoolTarget, Route, UpstreamTarget
from router.balancing import Endpoint
from router.errors import RequestRejected
from router.snapshot import FleetSnapshot


@dataclass(frozen=True, slots=True)
class Target:
    label: str  # x-flotilla-target and the metrics' `target`: pool:<n>, upstream:<host>, model:<id>
    endpoints: tuple[Endpoint, ...]
    model: str | None = None  # rewrite the request's `model` to this
    pool: str | None = None  # demand key (pool name, or model:<id>); None for upstreams
    api_key_env: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    model: str
    targets: tuple[Target, ...]
    resume: bool = True  # Route.stream_resume: continue broken streams on another worker
    cache: CacheOptions | None = None  # Route.cache
    auto: AutoPlan | None = None  # a route with an auto target: one plan per choice

    def pick(self, choice: str | None) -> Plan:
        """The plan for a complexity choice ("small" / "large"); itself for other routes."""
        if self.auto is None:
            return self
        return self.auto.large if choice == "large" else self.auto.small


@dataclass(frozen=True, slots=True)
class AutoPlan:
    threshold: float
    small: Plan
    large: Plan


def upstream_label(base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"upstream:{parts.netloc or base_url}"


def _pool_target(snapshot: FleetSnapshot, name: str, model: str) -> Target:
    pool = snapshot.pools.get(name)
    endpoints = snapshot.by_pool.get(name, ())
    rewrite = pool.model_id if pool is not None and pool.model_id != model else None
    return Target(label=f"pool:{name}", endpoints=endpoints, model=rewrite, pool=name)


def _upstream_target(target: UpstreamTarget, model: str) -> Target:
    base = target.upstream.rstrip("/")
    endpoint = Endpoint(key=f"upstream:{base}", base_url=base, is_upstream=True)
    rewrite = target.model if target.model and target.model != model else None
    return Target(label=upstream_label(base), endpoints=(endpoint,), model=rewrite,
                  api_key_env=target.api_key_env)


def _route_targets(snapshot: FleetSnapshot, route: Route, model: str,
                   choice: str | None = None) -> tuple[Target, ...]:
    """The route's targets in order; an auto target expands to its `choice` (none: skipped)."""
    targets: list[Target] = []
    for item in route.targets:
        if isinstance(item, PoolTarget):
            targets.append(_pool_target(snapshot, item.pool, model))
        elif isinstance(item, UpstreamTarget):
            targets.append(_upstream_target(item, model))
        elif isinstance(item, AutoTarget) and choice is not None:
            name = item.auto.large if choice == "large" else item.auto.small
            targets.extend(_named_targets(snapshot, name, model))
    return tuple(targets)


def _named_targets(snapshot: FleetSnapshot, name: str, model: str) -> tuple[Target, ...]:
    """An auto choice's targets: the pool of that name, else what serves the model of that name
    (its route without auto targets - no nesting -, its pools or its workers), asked for as
    `name`; an unknown name is a cold target (demand, cold wait)."""
    if name in snapshot.pools:
        return (_pool_target(snapshot, name, model),)
    route = snapshot.routes.get(name)
    if route is not None:
        found = _route_targets(snapshot, route, name)
    else:
        plan = build_plan(snapshot, name)
        found = plan.targets if plan is not None else ()
    if not found:
        return (Target(label=f"model:{name}", endpoints=(), model=name, pool=f"model:{name}"),)
    return tuple(t if t.model is not None else dataclasses.replace(t, model=name) for t in found)


def build_plan(snapshot: FleetSnapshot, model: str) -> Plan | None:
    route = snapshot.routes.get(model)
    if route is not None:
        auto = next((t.auto for t in route.targets if isinstance(t, AutoTarget)), None)
        if auto is None:
            return Plan(model, _route_targets(snapshot, route, model),
                        resume=route.stream_resume, cache=route.cache)
        small, large = (Plan(model, _route_targets(snapshot, route, model, choice),
                             resume=route.stream_resume, cache=route.cache)
                        for choice in ("small", "large"))
        return Plan(model, small.targets, resume=route.stream_resume, cache=route.cache,
                    auto=AutoPlan(auto.threshold, small, large))
    pools = snapshot.pools_by_model.get(model)
    if pools:
        return Plan(model, tuple(_pool_target(snapshot, name, model) for name in pools))
    endpoints = snapshot.by_model.get(model)
    if endpoints:
        return Plan(model, (Target(label=f"model:{model}", endpoints=endpoints,
                                   pool=f"model:{model}"),))
    return None


class Planner:
    """Plans per model for the snapshot in use (cached while the snapshot stays the same)."""

    def __init__(self) -> None:
        self._snapshot: FleetSnapshot | None = None
        self._plans: dict[str, Plan] = {}

    def plan(self, snapshot: FleetSnapshot, model: str, known_models: set[str]) -> Plan:
        if snapshot is not self._snapshot:
            self._snapshot = snapshot
            self._plans = {}
        plan = self._plans.get(model)
        if plan is not None:
            return plan
        plan = build_plan(snapshot, model)
        if plan is None:
            if model not in known_models:
                raise RequestRejected(
                    404, f"The model `{model}` does not exist or you do not have access to it.",
                    param="model", code="model_not_found")
            # Served before, nothing ready now: the cold wait decides.
            plan = Plan(model, (Target(label=f"model:{model}", endpoints=(),
                                       pool=f"model:{model}"),))
        self._plans[model] = plan
        return plan

    def models(self, snapshot: FleetSnapshot) -> list[str]:
        """Every model a client may ask for now (GET /v1/models)."""
        names = set(snapshot.routes) | set(snapshot.pools_by_model) | set(snapshot.by_model)
        return sorted(names)
