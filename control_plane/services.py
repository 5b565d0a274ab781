"""The control plane's services, built once per app and shared by its handlers and loops.

    ControlPlane
      store ─ writer (group commit) ─ events (timeline)
      tokens (worker tokens)   keys (API keys)   url_policy
      registry (workers) ◄── prober (/readyz probes)
      guard (epoch check, reseed)                   tasks (owned background loops)
      catalog (pools, routes)
      capacity (autoscaler loop, executor, instance book) ─ costs (ledger)   reconciler
      bursts (floors on capacity, timeline, cost so far)   throughput (measured tokens/s)
      estimate_table (configured throughput, prices, upstream price)

`start()` reads the store back (a restart keeps workers, tokens and keys), claims the epoch and
starts the loops; `aclose()` stops the loops, writes what is still queued and closes what this
object opened (never an injected store or HTTP client: their owner closes them).
Modules added later (pools, routes, autoscaler, providers) build their service in
`ControlPlane.__init__`, add it to the guard if it holds documents, and start their loop in
`start()`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

import aiohttp
from prometheus_client import CollectorRegistry

from control_plane.bursts.manager import BurstManager
from control_plane.bursts.metrics import BurstGauges
from control_plane.capacity.gauges import CapacityMetrics
from control_plane.capacity.manager import CapacityManager
from control_plane.capacity.reconciler import Reconciler
from control_plane.catalog import FleetCatalog
from control_plane.estimates import EstimateTable
from control_plane.events import EventLog
from control_plane.keys import ApiKeys
from control_plane.loops import OwnedTasks, periodic
from control_plane.metrics import ControlPlaneMetrics
from control_plane.probes import ProbeRequests, ReadinessProber, probe_session
from control_plane.providers.base import CapacityProvider
from control_plane.registry import WorkerRegistry
from control_plane.settings import ControlPlaneSettings
from control_plane.store_guard import StoreGuard
from control_plane.throughput import ThroughputMeter
from control_plane.tokens import WorkerTokens
from control_plane.url_policy import UrlPolicy
from control_plane.writer import WorkerWriter
from fleet.store import (
    TOPIC_KEYS,
    TOPIC_POOLS,
    TOPIC_ROUTES,
    TOPIC_WORKERS,
    FleetStore,
    FleetStoreError,
)

log = logging.getLogger("flotilla.control_plane")

STARTUP_STORE_WAIT_S = 30.0  # how long start-up waits for the store before giving up


class ControlPlane:
    def __init__(self, settings: ControlPlaneSettings, store: FleetStore, *,
                 http: aiohttp.ClientSession | None = None,
                 metrics_registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.time,
                 providers: Mapping[str, CapacityProvider] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.metrics = ControlPlaneMetrics(metrics_registry or CollectorRegistry())
        self._own_http = http is None
        self.http = http or probe_session(timeout_s=settings.probe_timeout_s,
                                          concurrency=settings.probe_concurrency)
        self.writer = WorkerWriter(store, self.metrics, coalesce_s=settings.store_write_coalesce_s)
        self.events = EventLog(self.writer, self.metrics, clock)
        self.tokens = WorkerTokens(store)
        self.keys = ApiKeys(store, clock)
        self.catalog = FleetCatalog(store)
        self.url_policy = UrlPolicy(settings.worker_networks)
        probe_requests = ProbeRequests()
        self.registry = WorkerRegistry(store, self.writer, self.events, self.tokens,
                                       self.url_policy, probe_requests, self.metrics, settings,
                                       clock)
        self.prober = ReadinessProber(
            self.registry, probe_requests, self.http, interval_s=settings.probe_interval_s,
            timeout_s=settings.probe_timeout_s, concurrency=settings.probe_concurrency,
            metrics=self.metrics, clock=clock)
        self.guard = StoreGuard(store, self.events, self.metrics,
                                topics=[TOPIC_WORKERS, TOPIC_KEYS, TOPIC_POOLS, TOPIC_ROUTES])
        self.guard.add(self.tokens.docs)
        self.guard.add(self.keys.docs)
        self.guard.add(self.catalog.pool_docs)
        self.guard.add(self.catalog.route_docs)
        self.guard.add(self.registry)
        self.capacity = CapacityManager(
            settings, store, registry=self.registry, catalog=self.catalog, events=self.events,
            tokens=self.tokens, metrics=CapacityMetrics(self.metrics.registry), clock=clock,
            providers=providers)
        self.costs = self.capacity.costs
        self.reconciler = Reconciler(
            settings, self.capacity.providers, book=self.capacity.book, costs=self.costs,
            registry=self.registry, tokens=self.tokens, catalog=self.catalog,
            events=self.events, clock=clock)
        self.guard.add(self.capacity.book.docs)
        self.guard.add(self.costs.docs)
        self.estimate_table = EstimateTable.load(settings.estimate_table)
        self.throughput = ThroughputMeter(self.http, timeout_s=settings.probe_timeout_s)
        self.bursts = BurstManager(
            store, self.events, self.capacity, self.costs, pools=self.catalog.pool,
            workers=self.registry.records, clock=clock,
            capacity_timeout_s=settings.burst_capacity_timeout_s)
        self.guard.add(self.bursts.docs)
        self.metrics.registry.register(BurstGauges(self.bursts))
        self.metrics.watch_workers(self.registry, clock)
        self.tasks = OwnedTasks()
        # The writer is owned apart from the loops: it must outlive them at shutdown (`aclose`).
        self.writer_tasks = OwnedTasks()

    async def start(self) -> None:
        await self._wait_for_store()
        self.writer_tasks.start("store-writer", self.writer.run())
        fresh_store = await self.store.get_epoch() is None
        await self.guard.claim()
        if fresh_store:
            self.reconciler.fresh_store_at = self.clock()
        tokens = await self.tokens.load()
        keys = await self.keys.load()
        workers = await self.registry.load()
        pools, routes = await self.catalog.load()
        instances, _ = await self.capacity.load()
        bursts = await self.bursts.load()  # running bursts set their floors again
        log.info("control plane state read back: %d workers, %d worker tokens, %d api keys, "
                 "%d pools, %d routes, %d instances, %d bursts", workers, tokens, keys, pools,
                 routes, instances, bursts)
        settings = self.settings
        self.tasks.start("readiness-prober", self.prober.run())
        self.tasks.start("worker-expiry", periodic(
            "worker expiry", min(1.0, settings.heartbeat_interval_s / 2), self._expire))
        self.tasks.start("store-guard", periodic(
            "store check", settings.store_check_interval_s, self.guard.check))
        self.tasks.start("reconcile", periodic(
            "reconcile", settings.reconcile_interval_s, self.reconciler.run_once))
        self.tasks.start("capacity", self.capacity.run())
        self.tasks.start("bursts", periodic(
            "burst tick", settings.burst_interval_s, self.bursts.tick))
        self.tasks.start("throughput", periodic(
            "throughput sample", settings.throughput_sample_interval_s, self._sample_throughput))

    async def _sample_throughput(self) -> None:
        workers = [(w, self.registry.is_ready(w.worker_id)) for w in self.registry.records()]
        await self.throughput.sample(workers, self.clock())

    async def _expire(self) -> None:
        self.registry.expire(self.clock())

    async def _wait_for_store(self) -> None:
        deadline = time.monotonic() + STARTUP_STORE_WAIT_S
        delay = 0.1
        while True:
            try:
                await self.store.ping()
                return
            except FleetStoreError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("fleet store not reachable yet (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)

    async def aclose(self) -> None:
        """Stop the loops, flush what is queued (bounded), close what this object opened.

        The writer is drained only after everything that emits events or queues writes has
        stopped: a loop finishing its step during shutdown (the reconciler adopting an instance
        it had just recorded in the store, a launch ending) still gets its event written.
        """
        try:
            await self.tasks.aclose()
            await self.capacity.aclose()
        finally:
            try:
                await self.writer.drained(timeout=5.0)
                await self.writer_tasks.aclose()
            finally:
                if self._own_http:
                    await self.http.close()
