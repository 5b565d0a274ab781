"""Everything a router app holds for its lifetime, built from settings and started in the lifespan.

    store ─► SnapshotKeeper (workers, routes, pools) ─► Planner ─► balancing policy
          ─► KeyCache (API keys)                      InflightBook ◄─ Reporter (other replicas)
          ◄─ Reporter (own report, counts)            BreakerBoard, DemandBook, RateLimiter
    UpstreamClient (aiohttp session)                  RouterMetrics (own registry)

No module-level state: `flotilla up` runs a router beside the control plane in one process, and
tests build many apps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack

from prometheus_client import CollectorRegistry

from fleet.catalog import UpstreamTarget
from fleet.store import FleetStore, open_store
from router.auth import KeyCache
from router.balancing import BalancingPolicy
from router.breaker import BreakerBoard
from router.cache import ResponseCache
from router.complexity import ComplexityScorer, make_scorer
from router.demand import DemandBook
from router.inflight import InflightBook
from router.limits import RateLimiter
from router.metrics import RouterMetrics
from router.reporting import Reporter
from router.routing import Planner
from router.settings import RouterSettings
from router.snapshot import FleetSnapshot, SnapshotKeeper
from router.upstream import UpstreamClient, make_client

log = logging.getLogger("router")


class RouterRuntime:
    def __init__(self, settings: RouterSettings, store: FleetStore | None = None, *,
                 registry: CollectorRegistry | None = None) -> None:
        if store is None and not settings.redis_url:
            raise ValueError("the router needs a fleet store: set REDIS_URL or inject a store")
        self.settings = settings
        self._owns_store = store is None
        self.store: FleetStore = store or open_store(settings.redis_url,
                                                     prefix=settings.store_prefix)
        self.metrics = RouterMetrics(registry)
        self.breakers = BreakerBoard(threshold=settings.breaker_threshold,
                                     recovery_s=settings.breaker_recovery_s,
                                     on_transition=self.metrics.on_transition)
        self.inflight = InflightBook(success_rate=self._success_rate)
        self.policy = BalancingPolicy.make(settings.policy)
        self.demand = DemandBook()
        self.limiter = RateLimiter(
            on_reject=lambda limit: self.metrics.rate_limited.labels(limit).inc())
        self.keeper = SnapshotKeeper(self.store, refresh_period_s=settings.refresh_period_s,
                                     store_timeout_s=settings.store_timeout_s,
                                     max_snapshot_age_s=settings.max_snapshot_age_s,
                                     on_keys_changed=self._keys_changed)
        self.keys: KeyCache | None = None
        if not settings.no_auth:
            self.keys = KeyCache(self.store, ttl_s=settings.key_cache_ttl_s,
                                 negative_ttl_s=settings.negative_cache_ttl_s,
                                 negative_size=settings.negative_cache_size,
                                 store_timeout_s=settings.store_timeout_s,
                                 store_ok=lambda: self.keeper.store_ok)
        self.planner = Planner()
        self.scorer: ComplexityScorer = make_scorer(settings.complexity_scorer)
        self.cache = ResponseCache(self.store, self.metrics,
                                   store_timeout_s=settings.store_timeout_s)
        self.upstream: UpstreamClient = make_client(
            settings.upstream_client, connect_timeout_s=settings.connect_timeout_s,
            max_connections_per_host=settings.max_connections_per_worker)
        self.reporter = Reporter(self.store, router_id=settings.router_id,
                                 period_s=settings.report_period_s,
                                 peer_stale_s=settings.peer_stale_s,
                                 store_timeout_s=settings.store_timeout_s,
                                 inflight=self.inflight, breakers=self.breakers,
                                 demand=self.demand, limiter=self.limiter, keeper=self.keeper,
                                 metrics=self.metrics)
        self.keeper.on_change(self._forget_departed)
        self.metrics.bind_gauges(store_up=lambda: 1.0 if self.keeper.store_ok else 0.0,
                                 snapshot_age=lambda: self.keeper.age() or 0.0)
        self._tasks: list[asyncio.Task[None]] = []

    def _success_rate(self, key: str) -> float:
        breaker = self.breakers.peek(key)
        return 1.0 if breaker is None else breaker.success_rate

    def _keys_changed(self) -> None:
        if self.keys is not None:
            self.keys.invalidate()

    def _forget_departed(self, snapshot: FleetSnapshot) -> None:
        keep = snapshot.worker_ids()
        for route in snapshot.routes.values():
            keep.update(f"upstream:{t.upstream.rstrip('/')}" for t in route.targets
                        if isinstance(t, UpstreamTarget))
        self.breakers.forget_except(keep)

    async def start(self, stack: AsyncExitStack) -> None:
        """Open the resources and start the owned loops; `stack` undoes it all at shutdown."""
        if self._owns_store:
            stack.push_async_callback(self.store.aclose)
        await self.upstream.start()
        stack.push_async_callback(self.upstream.aclose)
        # One bounded attempt at a first snapshot so the router is ready at once when the store
        # is up; when it is not, the loops keep trying and /readyz says so meanwhile.
        await self.keeper.refresh()
        stack.push_async_callback(self._stop_loops)
        for name, loop in (("snapshot-refresh", self.keeper.run_refresh_loop),
                           ("change-subscription", self.keeper.run_subscription_loop),
                           ("report", self.reporter.run)):
            self._tasks.append(asyncio.create_task(loop(), name=f"router-{name}"))
        log.info("router %s started (policy %s, auth %s)", self.settings.router_id,
                 self.settings.policy, "off" if self.settings.no_auth else "on")

    async def _stop_loops(self) -> None:
        self.reporter.stop()
        reporter = self._tasks[-1]
        with contextlib.suppress(TimeoutError):
            # One cycle is at most three store calls of store_timeout_s each.
            await asyncio.wait_for(asyncio.shield(reporter), 4 * self.settings.store_timeout_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.reporter.withdraw()
