"""Per-key requests/min and tokens/min limits shared by router replicas, and usage accounting.

No store call per request. Each replica counts locally per key and fixed one-minute window
(aligned on wall-clock minutes, so every replica agrees on the window), and every sync period
(the report period, default 0.25 s) sends its unsynced counts in one batch of `HINCRBY`s
(`store.add_counts`), which returns the global totals of the window. A request is admitted while

    global total at the last sync + this replica's unsynced count < limit

Overshoot bound: the other replicas' admissions since their last sync are invisible, so a key can
exceed its limit by at most (replicas - 1) x (its request rate per replica) x (sync period), plus
one request's tokens per replica for tokens/min (a request's tokens are known only once it is
answered). While the store is unreachable each replica enforces the limit on its own counts, so
the cluster admits up to replicas x limit; counts made meanwhile are sent when the store is back.

Usage per key goes through the same batches into hourly counters (`usage:<key id>:<YYYYMMDDHH>`:
requests, prompt_tokens, completion_tokens, estimated_tokens) that the control plane can read.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from fleet.store import CountUpdate, FleetStore
from router.auth import Principal
from router.errors import RequestRejected, retry_after_headers

WINDOW_S = 60.0
_USAGE_TTL_S = 8 * 24 * 3600.0


@dataclass(slots=True)
class _Window:
    key_id: str
    index: int  # floor(wall clock / 60)
    rpm: int | None
    tpm: int | None
    global_requests: int = 0
    global_tokens: int = 0
    unsynced_requests: int = 0
    unsynced_tokens: int = 0


@dataclass(slots=True)
class _Usage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated_tokens: int = 0

    def deltas(self) -> dict[str, int]:
        return {"requests": self.requests, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "estimated_tokens": self.estimated_tokens}


def window_key(key_id: str, index: int) -> str:
    return f"ratelimit:{key_id}:{index}"


def usage_key(key_id: str, hour: int) -> str:
    """The hourly usage counter of a key; `hour` is floor(Unix time / 3600)."""
    return f"usage:{key_id}:{time.strftime('%Y%m%d%H', time.gmtime(hour * 3600))}"


class RateLimiter:
    def __init__(self, *, clock: Callable[[], float] = time.time,
                 on_reject: Callable[[str], None] | None = None) -> None:
        self._clock = clock
        self._on_reject = on_reject
        self._windows: dict[str, _Window] = {}
        self._usage: dict[tuple[str, int], _Usage] = {}  # (key id, hour) -> unsynced usage

    def _window(self, principal: Principal, now: float) -> _Window:
        index = int(now // WINDOW_S)
        window = self._windows.get(principal.key_id)
        if window is None or window.index != index:
            window = self._windows[principal.key_id] = _Window(
                principal.key_id, index, principal.rpm, principal.tpm)
        else:
            window.rpm, window.tpm = principal.rpm, principal.tpm  # limits may have changed
        return window

    def admit(self, principal: Principal) -> None:
        """Count one request against the key's limits, or raise 429 with retry-after."""
        now = self._clock()
        if principal.rpm is None and principal.tpm is None:
            self._count_usage(principal.key_id, now, requests=1)
            return
        window = self._window(principal, now)
        retry_in = (window.index + 1) * WINDOW_S - now
        if principal.rpm is not None and (
                window.global_requests + window.unsynced_requests >= principal.rpm):
            self._rejected("requests")
            raise RequestRejected(
                429, f"Rate limit reached for this API key: {principal.rpm} requests per "
                     f"minute. Retry in {math.ceil(retry_in)} s.",
                code="rate_limit_exceeded", headers=retry_after_headers(retry_in))
        if principal.tpm is not None and (
                window.global_tokens + window.unsynced_tokens >= principal.tpm):
            self._rejected("tokens")
            raise RequestRejected(
                429, f"Rate limit reached for this API key: {principal.tpm} tokens per "
                     f"minute. Retry in {math.ceil(retry_in)} s.",
                code="rate_limit_exceeded", headers=retry_after_headers(retry_in))
        window.unsynced_requests += 1
        self._count_usage(principal.key_id, now, requests=1)

    def _rejected(self, limit: str) -> None:
        if self._on_reject is not None:
            self._on_reject(limit)

    def record_usage(self, principal: Principal, prompt_tokens: int, completion_tokens: int,
                     *, estimated: bool = False) -> None:
        now = self._clock()
        total = prompt_tokens + completion_tokens
        if estimated:
            self._count_usage(principal.key_id, now, estimated=total)
        else:
            self._count_usage(principal.key_id, now, prompt=prompt_tokens,
                              completion=completion_tokens)
        if principal.tpm is not None or principal.rpm is not None:
            self._window(principal, now).unsynced_tokens += total

    def _count_usage(self, key_id: str, now: float, *, requests: int = 0, prompt: int = 0,
                     completion: int = 0, estimated: int = 0) -> None:
        key = (key_id, int(now // 3600))
        usage = self._usage.get(key)
        if usage is None:
            usage = self._usage[key] = _Usage()
        usage.requests += requests
        usage.prompt_tokens += prompt
        usage.completion_tokens += completion
        usage.estimated_tokens += estimated

    # the periodic sync --------------------------------------------------------------------------
    async def sync(self, store: FleetStore) -> None:
        """Send unsynced counts, learn the global totals; on failure the counts are kept."""
        now = self._clock()
        current = int(now // WINDOW_S)
        for key_id in [k for k, w in self._windows.items()
                       if w.index < current and not w.unsynced_requests and not w.unsynced_tokens]:
            del self._windows[key_id]
        windows = list(self._windows.values())
        sent = [(w.unsynced_requests, w.unsynced_tokens) for w in windows]
        usage_items = [(k, u) for k, u in self._usage.items() if any(u.deltas().values())]
        usage_sent = [u.deltas() for _, u in usage_items]
        # Zero deltas still return the window's global totals (what the other replicas counted).
        updates = [CountUpdate(window_key(w.key_id, w.index),
                               {"requests": r, "tokens": t}, ttl_s=2 * WINDOW_S)
                   for w, (r, t) in zip(windows, sent, strict=True)]
        updates += [CountUpdate(usage_key(*k), d, ttl_s=_USAGE_TTL_S)
                    for (k, _), d in zip(usage_items, usage_sent, strict=True)]
        if not updates:
            return
        totals = await store.add_counts(updates)
        for window, (r, t), total in zip(windows, sent, totals, strict=False):
            window.unsynced_requests -= r
            window.unsynced_tokens -= t
            window.global_requests = total.get("requests", window.global_requests)
            window.global_tokens = total.get("tokens", window.global_tokens)
        for (key, usage), d in zip(usage_items, usage_sent, strict=True):
            usage.requests -= d["requests"]
            usage.prompt_tokens -= d["prompt_tokens"]
            usage.completion_tokens -= d["completion_tokens"]
            usage.estimated_tokens -= d["estimated_tokens"]
            if not any(usage.deltas().values()):
                del self._usage[key]
