"""The response cache: a route's deterministic answers kept in the fleet store for a while.

    route has `cache`?  no ─► no lookup at all (no header, no cost)
    deterministic?      chat/completions: `seed` given, or `temperature` 0; and no tools or
                        functions. Embeddings always. Else: bypass (served, never stored)
    key                 SHA-256 of (tenant, serving model, the body as canonical JSON with sorted
                        keys and `model` replaced by the serving model); tenant = the API key's id,
                        or "shared" with `cache.shared`. Stream and non-stream requests differ in
                        their bodies, so each has its own entry (a stream is stored as its SSE
                        events and replayed as a stream)
    lookup              one store round trip (`cache_get`, bounded by --store-timeout); a store
                        error is a miss, never a failed request
    stored              only a 200 answer relayed whole: a non-streamed body, or a stream that
                        ended with [DONE], carried no error event, was not resumed on another
                        worker and fits in `max_entry_bytes`; and only when the target that
                        served it is the one the key was made for (a fallback's answer is not
                        filed under the pool's model). Errors and partial streams never are.
    bound               `ttl_s` (default 300 s) per entry; `max_entries` per route, least
                        recently used evicted (`FleetStore.cache_put`)

Headers: `x-flotilla-cache: hit | miss` on cacheable requests of a cached route. Metrics:
`flotilla_router_cache_requests_total{model,result}` (hit, miss, bypass, error) and
`flotilla_router_cache_evictions_total{model}`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from fleet.catalog import CacheOptions
from fleet.store import FleetStore, FleetStoreError
from router.inbound import ClientRequest
from router.metrics import RouterMetrics
from router.routing import Plan

log = logging.getLogger("router.cache")

_MAGIC = b"FLC1\n"
HIT = [(b"x-flotilla-cache", b"hit")]
MISS = [(b"x-flotilla-cache", b"miss")]


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def deterministic(request: ClientRequest) -> bool:
    payload = request.payload
    if request.kind == "embeddings":
        return True
    if payload.get("tools") or payload.get("functions"):
        return False
    seed = payload.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        return True
    return _number(payload.get("temperature")) == 0.0


def serving_model(plan: Plan, request: ClientRequest) -> tuple[str, str]:
    """(target label, model sent upstream) of the target that would serve now."""
    target = next((t for t in plan.targets if t.endpoints),
                  plan.targets[0] if plan.targets else None)
    if target is None:
        return "none", request.model
    return target.label, target.model or request.model


def cache_key(request: ClientRequest, model: str, tenant: str) -> str:
    canonical = orjson.dumps({**request.payload, "model": model}, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256()
    for part in (tenant.encode(), model.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Ticket:
    """A cacheable request's place in the cache."""

    space: str  # the route's model: max_entries is per route
    key: str
    target: str  # the target label the key was made for
    options: CacheOptions


@dataclass(frozen=True, slots=True)
class Cached:
    stream: bool
    content_type: bytes
    target: str
    body: bytes


def encode_entry(stream: bool, content_type: bytes, target: str, body: bytes) -> bytes:
    head = orjson.dumps({"stream": stream, "content_type": content_type.decode("latin-1"),
                         "target": target})
    return _MAGIC + head + b"\n" + body


def decode_entry(raw: bytes) -> Cached | None:
    if not raw.startswith(_MAGIC):
        return None
    head, _, body = raw[len(_MAGIC):].partition(b"\n")
    try:
        meta = orjson.loads(head)
    except orjson.JSONDecodeError:
        return None
    return Cached(stream=bool(meta.get("stream")),
                  content_type=str(meta.get("content_type", "application/json")).encode(),
                  target=str(meta.get("target", "cache")), body=body)


class ResponseCache:
    def __init__(self, store: FleetStore, metrics: RouterMetrics, *,
                 store_timeout_s: float) -> None:
        self.store = store
        self.metrics = metrics
        self.store_timeout_s = store_timeout_s

    def ticket(self, plan: Plan, request: ClientRequest, key_id: str | None) -> Ticket | None:
        """The request's cache ticket, or None when it must bypass the cache (counted)."""
        options = plan.cache
        assert options is not None
        if not deterministic(request):
            self.metrics.cache_result(request.model, "bypass")
            return None
        label, model = serving_model(plan, request)
        tenant = "shared" if options.shared else (key_id or "anonymous")
        return Ticket(space=request.model, key=cache_key(request, model, tenant), target=label,
                      options=options)

    async def lookup(self, ticket: Ticket, model: str) -> Cached | None:
        try:
            raw = await asyncio.wait_for(self.store.cache_get(ticket.space, ticket.key),
                                         self.store_timeout_s)
        except (FleetStoreError, TimeoutError) as exc:
            log.warning("cache lookup failed: %s", exc)
            self.metrics.cache_result(model, "error")
            return None
        cached = decode_entry(raw) if raw is not None else None
        self.metrics.cache_result(model, "hit" if cached is not None else "miss")
        return cached

    async def save(self, ticket: Ticket, model: str, *, stream: bool, content_type: bytes,
                   target: str, body: bytes) -> None:
        """Keep an answer (called once the client has it all)."""
        if target != ticket.target or len(body) > ticket.options.max_entry_bytes:
            return
        entry = encode_entry(stream, content_type, target, body)
        try:
            evicted = await asyncio.wait_for(
                self.store.cache_put(ticket.space, ticket.key, entry, ticket.options.ttl_s,
                                     ticket.options.max_entries), self.store_timeout_s)
        except (FleetStoreError, TimeoutError) as exc:
            log.warning("cache store failed: %s", exc)
            return
        if evicted:
            self.metrics.cache_evictions.labels(model).inc(evicted)
