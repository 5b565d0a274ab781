"""Reconcile what a provider really runs with what the store remembers, so nothing leaks.

Three inputs: the instances the provider lists (by tag: ours, this cluster), the store's instance
documents (collection `instances`, doc id = our instance id), and the registered workers. One pure
function, `plan_reconcile`, turns them into decisions; `apply_reconcile` carries them out;
`reconcile_once` does both, and is what the control plane calls from its loop.

    situation                                                   decision
    listed, no document, its pool exists (or pools unknown)     adopt      (recreate the document)
    listed, its pool was deleted or moved to another provider   terminate
    listed, more live instances than the pool's max_replicas    terminate  (the surplus: not yet
                                                                            serving first, newest)
    document, not listed (gone or going), older than the grace  forget     (the document and its
                                                                            workers)
    worker of this provider whose instance nobody knows         forget     (the worker)

Safety rules:
- Data loss is not a deletion. When the store has no epoch (Redis flushed or replaced), pools are
  unknown until the control plane rewrites them: only adopt and forget, never terminate.
- Listing is eventually consistent (a new instance can take a moment to show up in
  DescribeInstances) and booting takes time: documents and workers younger than `grace_s` are
  never forgotten.
- Nothing is deleted by mistake silently: every decision carries a reason and becomes an event.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from control_plane.providers.base import CapacityError, CapacityProvider, Instance
from fleet.catalog import Pool
from fleet.schemas import Event, Severity, WorkerRecord
from fleet.store import INSTANCES, POOLS, TOPIC_WORKERS, FleetStore, from_doc

log = logging.getLogger("flotilla.capacity.reconcile")

GONE_STATES = frozenset({"shutting-down", "terminated", "exited"})

ReconcileKind = Literal["adopt", "terminate", "forget"]


@dataclass(frozen=True, slots=True)
class ReconcileRules:
    grace_s: float = 300.0  # documents/workers younger than this are never forgotten
    allow_terminate: bool = True


@dataclass(frozen=True, slots=True)
class ReconcileAction:
    kind: ReconcileKind
    instance_id: str
    provider: str
    reason: str
    pool: str | None = None
    instance: Instance | None = None  # adopt: the facts to record
    worker_ids: tuple[str, ...] = ()  # forget: workers removed with the instance

    def event(self, now: float) -> Event:
        severity: Severity = "warning" if self.kind in ("adopt", "terminate") else "info"
        kind = {"adopt": "instance.adopted", "terminate": "instance.terminated",
                "forget": "instance.forgotten"}[self.kind]
        return Event(ts=now, kind=kind, severity=severity, subject=self.instance_id,
                     message=f"{self.kind} {self.instance_id}: {self.reason}",
                     data={"provider": self.provider, "pool": self.pool,
                           "workers": list(self.worker_ids)})


def plan_reconcile(
    *,
    provider: str,
    listed: Sequence[Instance],
    docs: Mapping[str, Mapping[str, Any]],
    workers: Sequence[WorkerRecord],
    pools: Mapping[str, Pool] | None,
    now: float,
    rules: ReconcileRules = ReconcileRules(),
) -> list[ReconcileAction]:
    """Decisions that bring store and provider in line. `pools=None` means pools are unknown."""
    live = [i for i in listed if i.state not in GONE_STATES]
    live_ids = {i.instance_id for i in live}
    ready_instances = {w.instance_id for w in workers if w.status == "ready"}
    actions: list[ReconcileAction] = []
    terminating: set[str] = set()

    for instance in live:
        pool = pools.get(instance.pool) if pools is not None else None
        if pools is not None and rules.allow_terminate and (
                pool is None or pool.provider != provider):
            why = (f"pool {instance.pool!r} no longer exists" if pool is None
                   else f"pool {instance.pool!r} now uses the {pool.provider} provider")
            actions.append(ReconcileAction("terminate", instance.instance_id, provider, why,
                                           pool=instance.pool))
            terminating.add(instance.instance_id)
        elif instance.instance_id not in docs:
            actions.append(ReconcileAction(
                "adopt", instance.instance_id, provider,
                f"{instance.provider_instance_id} is tagged as ours but the store had no record",
                pool=instance.pool, instance=instance))

    if pools is not None and rules.allow_terminate:
        by_pool: dict[str, list[Instance]] = collections.defaultdict(list)
        for instance in live:
            if instance.instance_id not in terminating:
                by_pool[instance.pool].append(instance)
        for name, members in by_pool.items():
            limit = pools[name].max_replicas
            if len(members) <= limit:
                continue
            # Surplus: machines not serving yet go first, then the newest.
            members.sort(key=lambda i: (i.instance_id in ready_instances, -i.launched_at))
            for instance in members[: len(members) - limit]:
                actions.append(ReconcileAction(
                    "terminate", instance.instance_id, provider,
                    f"pool {name!r} has {len(members)} instances, max_replicas is {limit}",
                    pool=name))

    workers_of: dict[str, list[str]] = collections.defaultdict(list)
    for worker in workers:
        workers_of[worker.instance_id].append(worker.worker_id)
    for instance_id, doc in docs.items():
        if doc.get("provider") != provider or instance_id in live_ids:
            continue
        if now - float(doc.get("launched_at") or 0.0) < rules.grace_s:
            continue
        actions.append(ReconcileAction(
            "forget", instance_id, provider,
            f"{doc.get('provider_instance_id')} no longer exists at the provider",
            pool=doc.get("pool"), worker_ids=tuple(workers_of.get(instance_id, ()))))

    for worker in workers:
        if (worker.provider != provider or worker.instance_id in live_ids
                or worker.instance_id in docs or now - worker.registered_at < rules.grace_s):
            continue
        actions.append(ReconcileAction(
            "forget", worker.instance_id, provider,
            f"worker {worker.worker_id} runs on an instance the provider does not know",
            pool=worker.pool, worker_ids=(worker.worker_id,)))
    return actions


async def apply_reconcile(actions: Sequence[ReconcileAction], *, provider: CapacityProvider,
                          store: FleetStore, now: float) -> list[Event]:
    """Carry out the decisions; a failing action is reported and the others still run."""
    events: list[Event] = []
    to_terminate = [a for a in actions if a.kind == "terminate"]
    if to_terminate:
        try:
            await provider.terminate([a.instance_id for a in to_terminate])
            events += [a.event(now) for a in to_terminate]
        except CapacityError as exc:
            events.append(Event(ts=now, kind="instance.terminate_failed", severity="error",
                                message=f"terminating {len(to_terminate)} instances failed: "
                                        f"{exc}", data={"provider": provider.name}))
    workers_changed = False
    for action in actions:
        if action.kind == "adopt" and action.instance is not None:
            doc = action.instance.to_doc() | {"adopted_at": now}
            await store.put_doc(INSTANCES, action.instance_id, doc)
            events.append(action.event(now))
        elif action.kind == "forget":
            await store.delete_doc(INSTANCES, action.instance_id)
            for worker_id in action.worker_ids:
                workers_changed |= await store.delete_worker(worker_id)
            events.append(action.event(now))
    for event in events:
        await store.add_event(event)
    if workers_changed:
        await store.publish(TOPIC_WORKERS)
    return events


async def reconcile_once(provider: CapacityProvider, store: FleetStore, *, now: float,
                         rules: ReconcileRules = ReconcileRules()) -> list[ReconcileAction]:
    """One pass: list, read the store, plan, apply. Raises CapacityError if listing fails."""
    listed = await provider.list_instances()
    epoch = await store.get_epoch()
    docs = await store.get_docs(INSTANCES)
    workers = await store.list_workers()
    pools: dict[str, Pool] | None = None
    if epoch is not None:
        pools = {}
        for name, doc in (await store.get_docs(POOLS)).items():
            try:
                pools[name] = from_doc(Pool, doc)
            except (TypeError, ValueError) as exc:
                log.warning("pool %s unreadable (%s): reconcile leaves its instances alone",
                            name, exc)
                pools = None
                break
    else:
        log.warning("the store has no epoch (data lost?): reconcile adopts and forgets only")
    if pools is None:
        rules = replace(rules, allow_terminate=False)
    actions = plan_reconcile(provider=provider.name, listed=listed, docs=docs, workers=workers,
                             pools=pools, now=now, rules=rules)
    await apply_reconcile(actions, provider=provider, store=store, now=now)
    return actions
