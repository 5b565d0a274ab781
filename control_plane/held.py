"""A store collection the control plane writes and keeps a copy of in memory.

The control plane is the only writer of its admin documents (API keys, worker tokens; pools and
routes later), so the copy in memory is the truth it can rewrite after the store lost its data
(`reseed`). Writes go to the store first and to memory only when the store accepted them: a write
the store refused leaves both unchanged, and the caller answers 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from fleet.store import FleetStore

RESEED_BATCH = 100  # documents written concurrently while reseeding


class HeldCollection:
    def __init__(self, store: FleetStore, collection: str) -> None:
        self.store = store
        self.collection = collection
        self._docs: dict[str, dict[str, Any]] = {}

    @property
    def name(self) -> str:
        return self.collection

    async def load(self) -> int:
        self._docs = await self.store.get_docs(self.collection)
        return len(self._docs)

    def get(self, doc_id: str) -> dict[str, Any] | None:
        return self._docs.get(doc_id)

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        return iter(list(self._docs.items()))

    def __len__(self) -> int:
        return len(self._docs)

    async def put(self, doc_id: str, doc: dict[str, Any]) -> None:
        await self.store.put_doc(self.collection, doc_id, doc)
        self._docs[doc_id] = doc

    async def delete(self, doc_id: str) -> bool:
        if doc_id not in self._docs:
            return False
        await self.store.delete_doc(self.collection, doc_id)
        self._docs.pop(doc_id, None)
        return True

    async def reseed(self) -> int:
        """Rewrite every held document (the store lost them)."""
        items = list(self._docs.items())
        for start in range(0, len(items), RESEED_BATCH):
            batch = items[start:start + RESEED_BATCH]
            await asyncio.gather(*(self.store.put_doc(self.collection, doc_id, doc)
                                   for doc_id, doc in batch))
        return len(items)
