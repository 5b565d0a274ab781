"""The instance book: every machine a provider launched for us, as store documents.

Collection `instances`, doc id = our instance id: the `Instance` facts (`Instance.to_doc()`) plus
what the control plane learnt about it since:

    drain_started_at   when the control plane began draining it (scale-down, release, interrupt)
    drain_reason       why
    worker_seen_at     when a worker of this instance was first seen (booting is over)

The registry reads `provider` and `private_ip` from these documents to check advertised URLs, so
a document is written before the instance can register. Held in memory (`HeldCollection`) and
added to the store guard: a flushed store gets them back.
"""

from __future__ import annotations

from typing import Any

from control_plane.held import HeldCollection
from control_plane.providers.base import Instance
from fleet.store import INSTANCES, FleetStore


class InstanceBook:
    def __init__(self, store: FleetStore) -> None:
        self.docs = HeldCollection(store, INSTANCES)

    async def load(self) -> int:
        return await self.docs.load()

    def get(self, instance_id: str) -> dict[str, Any] | None:
        return self.docs.get(instance_id)

    def instance(self, instance_id: str) -> Instance | None:
        doc = self.docs.get(instance_id)
        return None if doc is None else Instance.from_doc(doc)

    def all(self) -> dict[str, dict[str, Any]]:
        return dict(self.docs.items())

    def of_pool(self, pool: str) -> list[Instance]:
        return [Instance.from_doc(doc) for _, doc in self.docs.items() if doc.get("pool") == pool]

    def instances(self) -> list[Instance]:
        return [Instance.from_doc(doc) for _, doc in self.docs.items()]

    async def record(self, instance: Instance, **facts: Any) -> None:
        await self.docs.put(instance.instance_id, instance.to_doc() | facts)

    async def note(self, instance_id: str, **facts: Any) -> None:
        """Add facts to an instance's document (no-op for an unknown instance)."""
        doc = self.docs.get(instance_id)
        if doc is not None:
            await self.docs.put(instance_id, doc | facts)

    async def remove(self, instance_id: str) -> bool:
        return await self.docs.delete(instance_id)
