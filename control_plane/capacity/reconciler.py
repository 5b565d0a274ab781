"""The reconcile loop: what providers really run vs the instance book vs the registry.

Every `reconcile_interval_s` (and at start) per enabled provider: list its instances, plan with
`providers.reconcile.plan_reconcile` (pure) over the control plane's memory, and apply:

    adopt       instance tagged as ours, no document (a crash between launch and write, a store
                loss): the document and the cost entry are recreated from its tags/records
    terminate   instance of a deleted pool / another provider that the book does not know
                (what the book knows is released drain-first by the manager instead)
    forget      document whose instance is gone, or worker on an instance nobody knows: the
                document, its workers (through the registry) and its worker token go

Safety: on a store that was empty when this control plane started (Redis lost, first start),
pools are unknown until operators or `flotilla up` put them back; for `orphan_grace_s` after such
a start nothing is terminated, only adopted and forgotten. Records younger than
`reconcile_grace_s` are never forgotten (listing lags launches; machines take time to boot).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from control_plane.capacity.book import InstanceBook
from control_plane.capacity.costs import CostLedger
from control_plane.catalog import FleetCatalog
from control_plane.events import EventLog
from control_plane.providers.base import CapacityError, CapacityProvider
from control_plane.providers.reconcile import ReconcileAction, ReconcileRules, plan_reconcile
from control_plane.registry import WorkerRegistry
from control_plane.settings import ControlPlaneSettings
from control_plane.tokens import WorkerTokens

log = logging.getLogger("flotilla.capacity.reconcile")


class Reconciler:
    def __init__(self, settings: ControlPlaneSettings, providers: Mapping[str, CapacityProvider],
                 *, book: InstanceBook, costs: CostLedger, registry: WorkerRegistry,
                 tokens: WorkerTokens, catalog: FleetCatalog, events: EventLog,
                 clock: Callable[[], float]) -> None:
        self.settings = settings
        self.providers = providers
        self.book = book
        self.costs = costs
        self.registry = registry
        self.tokens = tokens
        self.catalog = catalog
        self.events = events
        self.clock = clock
        self.fresh_store_at: float | None = None  # set when the store was empty at start

    async def run_once(self) -> list[ReconcileAction]:
        done: list[ReconcileAction] = []
        for name, provider in self.providers.items():
            try:
                listed = await provider.list_instances()
            except CapacityError as exc:
                log.warning("reconcile: listing %s instances failed: %s", name, exc)
                continue
            now = self.clock()
            allow_terminate = self.fresh_store_at is None or \
                now - self.fresh_store_at >= self.settings.orphan_grace_s
            actions = plan_reconcile(
                provider=name, listed=listed, docs=self.book.all(),
                workers=self.registry.records(), pools=self.catalog.pools(), now=now,
                rules=ReconcileRules(grace_s=self.settings.reconcile_grace_s,
                                     allow_terminate=allow_terminate))
            for action in actions:
                if await self._apply(provider, action, now):
                    done.append(action)
        return done

    async def _apply(self, provider: CapacityProvider, action: ReconcileAction,
                     now: float) -> bool:
        if action.kind == "terminate":
            if self.book.get(action.instance_id) is not None:
                return False  # the manager releases known instances drain-first
            try:
                await provider.terminate([action.instance_id])
            except CapacityError as exc:
                self.events.emit("instance.terminate_failed",
                                 f"reconcile could not terminate {action.instance_id}: {exc}",
                                 severity="error", subject=action.instance_id)
                return False
            await self.costs.end(action.instance_id, now)
        elif action.kind == "adopt" and action.instance is not None:
            await self.book.record(action.instance, adopted_at=now)
            await self.costs.start(action.instance)
        elif action.kind == "forget":
            await self.book.remove(action.instance_id)
            await self.costs.end(action.instance_id, now)
            self.registry.remove_instance(action.instance_id, action.reason, now)
            await self.tokens.forget(action.instance_id)
        event = action.event(now)
        self.events.emit(event.kind, event.message, severity=event.severity,
                         subject=event.subject, data=event.data, now=now)
        return True
