"""Pools and routes: what operators configure, held in memory and written through to the store.

    collection `pools`   pool name -> `fleet.catalog.Pool` as a JSON object
    collection `routes`  model     -> `fleet.catalog.Route` ({"targets": [...], "stream_resume"})

Routers read both (router/snapshot.py) and refresh when the topics `pools` / `routes` are
published, so a change reaches every router without a restart. Both collections are held
(`HeldCollection`) and added to the store guard: a flushed Redis gets them back.

Consistency rules (checked here, so the admin API and `flotilla up` agree):

- every `{"pool": name}` target of a route must name an existing pool (422 otherwise): a typo
  would otherwise make a model silently unroutable;
- a pool named by a route cannot be deleted (409 naming the routes): change or delete the routes
  first. Deleting a pool releases its capacity (the capacity manager drains its instances).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from control_plane.errors import Conflict, Unprocessable
from control_plane.held import HeldCollection
from fleet.catalog import AutoTarget, Pool, PoolTarget, Route, RouteTarget
from fleet.store import POOLS, ROUTES, TOPIC_POOLS, TOPIC_ROUTES, FleetStore, from_doc
from fleet.validation import ValidationError, parse

log = logging.getLogger("flotilla.control_plane.catalog")


def pool_doc(pool: Pool) -> dict[str, Any]:
    return dataclasses.asdict(pool)


def route_doc(route: Route) -> dict[str, Any]:
    return dataclasses.asdict(route)


def _pools_named(target: RouteTarget) -> tuple[str, ...]:
    """The names a target may resolve as pools (an auto target's sides name a pool or a model)."""
    if isinstance(target, PoolTarget):
        return (target.pool,)
    if isinstance(target, AutoTarget):
        return (target.auto.small, target.auto.large)
    return ()


class FleetCatalog:
    def __init__(self, store: FleetStore) -> None:
        self.store = store
        self.pool_docs = HeldCollection(store, POOLS)
        self.route_docs = HeldCollection(store, ROUTES)
        self._pools: dict[str, Pool] = {}
        self._routes: dict[str, Route] = {}

    async def load(self) -> tuple[int, int]:
        await self.pool_docs.load()
        await self.route_docs.load()
        self._pools = {}
        for name, doc in self.pool_docs.items():
            try:
                self._pools[name] = from_doc(Pool, doc)
            except (TypeError, ValueError) as exc:
                log.error("stored pool %r is unreadable (%s): ignored", name, exc)
        self._routes = {}
        for model, doc in self.route_docs.items():
            try:
                self._routes[model] = parse(Route, doc, allow_unknown=True)
            except ValidationError as exc:
                log.error("stored route %r is unreadable (%s): ignored", model, exc.message)
        return len(self._pools), len(self._routes)

    # reading ------------------------------------------------------------------------------------
    def pools(self) -> dict[str, Pool]:
        return dict(sorted(self._pools.items()))

    def pool(self, name: str) -> Pool | None:
        return self._pools.get(name)

    def routes(self) -> dict[str, Route]:
        return dict(sorted(self._routes.items()))

    def route(self, model: str) -> Route | None:
        return self._routes.get(model)

    def routes_using(self, pool: str) -> list[str]:
        return [model for model, route in sorted(self._routes.items())
                if any(pool in _pools_named(t) for t in route.targets)]

    # writing ------------------------------------------------------------------------------------
    async def put_pool(self, name: str, pool: Pool) -> Pool | None:
        """Create or replace a pool; returns the previous version (None: created)."""
        previous = self._pools.get(name)
        await self.pool_docs.put(name, pool_doc(pool))
        self._pools[name] = pool
        await self.store.publish(TOPIC_POOLS)
        return previous

    async def delete_pool(self, name: str) -> Pool | None:
        pool = self._pools.get(name)
        if pool is None:
            return None
        users = self.routes_using(name)
        if users:
            raise Conflict(f"pool {name!r} is a target of the routes {', '.join(users)}: change "
                           "or delete those routes first", param="name", code="pool_in_use")
        await self.pool_docs.delete(name)
        self._pools.pop(name, None)
        await self.store.publish(TOPIC_POOLS)
        return pool

    def check_route(self, route: Route) -> None:
        for index, target in enumerate(route.targets):
            if isinstance(target, PoolTarget) and target.pool not in self._pools:
                raise Unprocessable(f"targets[{index}].pool names no pool: {target.pool!r} "
                                    "(create it with PUT /v1/pools/{name} first)",
                                    param=f"targets[{index}].pool", code="unknown_pool")

    async def put_route(self, model: str, route: Route) -> Route | None:
        self.check_route(route)
        previous = self._routes.get(model)
        await self.route_docs.put(model, route_doc(route))
        self._routes[model] = route
        await self.store.publish(TOPIC_ROUTES)
        return previous

    async def delete_route(self, model: str) -> Route | None:
        route = self._routes.get(model)
        if route is None:
            return None
        await self.route_docs.delete(model)
        self._routes.pop(model, None)
        await self.store.publish(TOPIC_ROUTES)
        return route
