"""API keys for the router: created here, returned raw once, stored only as SHA-256.

Store collection `keys`, doc id = SHA-256 of the key, value = `ApiKeyRecord`. Routers look keys up
by hash and cache them; every change publishes the `keys` topic so their caches refresh at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from control_plane.held import HeldCollection
from fleet import secrets
from fleet.catalog import ApiKeyRecord, CreateKeyRequest
from fleet.store import KEYS, TOPIC_KEYS, FleetStore, from_doc


class ApiKeys:
    def __init__(self, store: FleetStore, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self.docs = HeldCollection(store, KEYS)

    async def load(self) -> int:
        return await self.docs.load()

    def records(self) -> list[ApiKeyRecord]:
        records = [from_doc(ApiKeyRecord, doc) for _, doc in self.docs.items()]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    def find(self, key_id: str) -> ApiKeyRecord | None:
        for record in self.records():
            if record.id == key_id:
                return record
        return None

    async def create(self, request: CreateKeyRequest) -> tuple[ApiKeyRecord, str]:
        raw = secrets.new_api_key()
        record = ApiKeyRecord(
            id=secrets.new_id("key"), name=request.name, key_hash=secrets.sha256_hex(raw),
            prefix=secrets.display_prefix(raw), created_at=self.clock(),
            models=request.models, rpm=request.rpm, tpm=request.tpm)
        await self.docs.put(record.key_hash, dataclasses.asdict(record))
        await self.store.publish(TOPIC_KEYS)
        return record, raw

    async def delete(self, key_id: str) -> ApiKeyRecord | None:
        record = self.find(key_id)
        if record is None:
            return None
        await self.docs.delete(record.key_hash)
        await self.store.publish(TOPIC_KEYS)
        return record
