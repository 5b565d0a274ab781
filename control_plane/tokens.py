"""Worker tokens: one per instance, issued once, stored only as SHA-256, bound to its instance.

Store collection `worker_tokens`, doc id = instance id:
    {"token_hash": sha256 | null, "issued_at": t | null, "revoked_hashes": [..],
     "revoked_at": t | null, "locked": bool}

A reverse index hash -> instance id is derived in memory from those documents (the control plane
holds all of them), so it can never drift from what is stored. Looking a hash up in a dict does
not compare secrets: the token is hashed first and an attacker learns nothing from the timing of
a lookup by a SHA-256 of a 256-bit secret; the final check against the instance's own hash uses
`hmac.compare_digest`.

Registration (instance I, token T presented or not):

    record for I                   no token            T = I's token    T of another    T unknown
    none                           issue (bootstrap)   -                403             issue (*)
    active                         401 required        ok               403             401
    revoked (locked)               401 revoked         401 revoked      403             401
    re-admitted (unlocked, none)   issue               401 revoked      403             issue

(*) the control plane lost its store and with it the record: the agent proves nothing, but it
    gets no more than a first registration would, and it replaces its token with the new one.

Heartbeat / deregister (worker W): no token or unknown token -> 401; revoked -> 401; W unknown
-> 404; W belongs to another instance than T's -> 403.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from control_plane.errors import Forbidden, Unauthorized
from control_plane.held import HeldCollection
from fleet import secrets
from fleet.store import WORKER_TOKENS, FleetStore

MAX_REVOKED_HASHES = 16  # per instance; older revoked tokens are refused as unknown (401) anyway


@dataclasses.dataclass(frozen=True, slots=True)
class TokenOwner:
    instance_id: str
    revoked: bool


class WorkerTokens:
    def __init__(self, store: FleetStore) -> None:
        self.docs = HeldCollection(store, WORKER_TOKENS)
        self._owner_by_hash: dict[str, TokenOwner] = {}

    async def load(self) -> int:
        count = await self.docs.load()
        self._owner_by_hash = {}
        for instance_id, doc in self.docs.items():
            self._index(instance_id, doc)
        return count

    def _index(self, instance_id: str, doc: dict[str, Any] | None) -> None:
        for revoked_hash in (doc or {}).get("revoked_hashes") or ():
            self._owner_by_hash[revoked_hash] = TokenOwner(instance_id, True)
        if doc and doc.get("token_hash"):
            self._owner_by_hash[doc["token_hash"]] = TokenOwner(instance_id, False)

    def _unindex(self, doc: dict[str, Any] | None) -> None:
        for old_hash in [*((doc or {}).get("revoked_hashes") or ()), (doc or {}).get("token_hash")]:
            if old_hash:
                self._owner_by_hash.pop(old_hash, None)

    async def _replace(self, instance_id: str, doc: dict[str, Any]) -> None:
        previous = self.docs.get(instance_id)
        await self.docs.put(instance_id, doc)
        self._unindex(previous)
        self._index(instance_id, doc)

    # checks -------------------------------------------------------------------------------------
    def owner(self, token: str | None) -> TokenOwner:
        """Whose valid token this is, or Unauthorized (missing, unknown, revoked)."""
        if not token:
            raise Unauthorized("worker token required: send Authorization: Bearer <token>")
        owner = self._owner_by_hash.get(secrets.sha256_hex(token))
        if owner is None:
            raise Unauthorized("unknown worker token; register again")
        if owner.revoked:
            raise Unauthorized(f"the worker token of instance {owner.instance_id} was revoked")
        doc = self.docs.get(owner.instance_id)
        if doc is None or not doc.get("token_hash") or not secrets.matches(
                token, doc["token_hash"]):
            raise Unauthorized("unknown worker token; register again")
        return owner

    def authorize_register(self, instance_id: str, token: str | None) -> bool:
        """Check a registration; True when a new token must be issued (see the table above)."""
        doc = self.docs.get(instance_id)
        if token:
            owner = self._owner_by_hash.get(secrets.sha256_hex(token))
            if owner is not None and owner.instance_id != instance_id:
                raise Forbidden(f"this worker token belongs to another instance, not "
                                f"{instance_id}")
            if owner is not None and owner.revoked:
                raise Unauthorized(f"the worker token of instance {instance_id} was revoked")
            if doc is None:
                return True  # the store lost the record: accept and issue a new token
            if doc.get("token_hash"):
                if secrets.matches(token, doc["token_hash"]):
                    return False
                raise Unauthorized(f"invalid worker token for instance {instance_id}")
            if doc.get("locked"):
                raise Unauthorized(f"the worker token of instance {instance_id} was revoked; "
                                   "an operator must re-admit the instance")
            return True
        if doc is None:
            return True
        if doc.get("token_hash"):
            raise Unauthorized(f"instance {instance_id} already has a worker token: send it as "
                               "Authorization: Bearer <token>")
        if doc.get("locked"):
            raise Unauthorized(f"the worker token of instance {instance_id} was revoked; an "
                               "operator must re-admit the instance")
        return True

    # changes ------------------------------------------------------------------------------------
    async def issue(self, instance_id: str, now: float) -> str:
        """A new token for the instance (returned this once); the store keeps its hash only."""
        token = secrets.new_worker_token()
        previous = self.docs.get(instance_id) or {}
        doc = {"token_hash": secrets.sha256_hex(token), "issued_at": now,
               "revoked_hashes": list(previous.get("revoked_hashes") or ()),
               "revoked_at": previous.get("revoked_at"), "locked": False}
        await self._replace(instance_id, doc)
        return token

    async def revoke(self, instance_id: str, now: float) -> bool:
        """Refuse the instance's token from now on and lock it out until re-admitted."""
        doc = self.docs.get(instance_id)
        if doc is None:
            return False
        revoked = list(doc.get("revoked_hashes") or ())
        if doc.get("token_hash"):
            revoked = (revoked + [doc["token_hash"]])[-MAX_REVOKED_HASHES:]
        await self._replace(instance_id, {**doc, "token_hash": None, "revoked_hashes": revoked,
                                          "revoked_at": now, "locked": True})
        return True

    async def readmit(self, instance_id: str) -> bool:
        """Let a revoked instance bootstrap a new token once more (revoked tokens stay refused)."""
        doc = self.docs.get(instance_id)
        if doc is None:
            return False
        await self._replace(instance_id, {**doc, "locked": False})
        return True

    async def forget(self, instance_id: str) -> bool:
        """Drop the instance's record (its machine is gone for good)."""
        previous = self.docs.get(instance_id)
        deleted = await self.docs.delete(instance_id)
        if deleted:
            self._unindex(previous)
        return deleted

    def public(self, instance_id: str, doc: dict[str, Any]) -> dict[str, Any]:
        state = "active" if doc.get("token_hash") else ("revoked" if doc.get("locked")
                                                        else "readmitted")
        return {"instance_id": instance_id, "state": state, "issued_at": doc.get("issued_at"),
                "revoked_at": doc.get("revoked_at")}

    def list_public(self) -> list[dict[str, Any]]:
        return [self.public(i, d) for i, d in sorted(self.docs.items())]
