"""Balancing policies: which worker of a target gets the next request.

One small protocol, policies registered by name (`BalancingPolicy.make(name)`); adding one is
adding one class. `choose` is a pure choice over the candidates the failover loop hands it (ready,
not circuit-open, not yet tried by this request) and a `Load` view; `on_start` / `on_finish` are
hooks for policies that keep state of their own.

    least_outstanding   fewest requests in flight on the worker, counted across all router
                        replicas (own live count + the others' last reports, see inflight.py);
                        ties: lower reported queue depth, then higher success rate, then rotate.
                        When the other replicas' counts are unknown (store unreachable for a few
                        report periods) it falls back to lowest_queue_depth.
    lowest_queue_depth  lowest queue depth as last reported by the worker's heartbeat, plus this
                        replica's own in-flight count so that a stale report does not send
                        everything to one worker; ties: rotate.
    round_robin         each candidate in turn (a baseline for the benchmarks).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Somewhere a request can go: a worker, or an external upstream."""

    key: str  # worker id, or "upstream:<base url>" (the breaker and in-flight key)
    base_url: str  # engine URL (workers) or OpenAI-compatible base URL ending in /v1 (upstreams)
    queue_depth: int = 0
    is_upstream: bool = False


class Load(Protocol):
    """What a policy may know of the fleet's load at this instant."""

    @property
    def shared(self) -> bool: ...  # the other replicas' counts are known (fresh reports)
    def local(self, key: str) -> int: ...
    def outstanding(self, key: str) -> int: ...  # local + the other replicas' last reports
    def success_rate(self, key: str) -> float: ...


class BalancingPolicy:
    name: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type[BalancingPolicy]]] = {}

    def __init_subclass__(cls, *, name: str, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = name
        BalancingPolicy._registry[name] = cls

    @classmethod
    def make(cls, name: str) -> BalancingPolicy:
        try:
            return cls._registry[name]()
        except KeyError:
            raise ValueError(f"unknown balancing policy {name!r}; known: "
                             f"{', '.join(sorted(cls._registry))}") from None

    @classmethod
    def names(cls) -> list[str]:
        return sorted(cls._registry)

    def choose(self, candidates: Sequence[Endpoint], load: Load) -> Endpoint | None:
        raise NotImplementedError

    def on_start(self, endpoint: Endpoint) -> None:
        return None

    def on_finish(self, endpoint: Endpoint) -> None:
        return None


class _Rotating:
    """Breaks exact ties in turn, so equal workers share traffic instead of the first taking all."""

    def __init__(self) -> None:
        self._turn = itertools.count()

    def _pick_min(self, candidates: Sequence[Endpoint],
                  keys: Sequence[tuple[float, ...]]) -> Endpoint:
        best = min(keys)
        tied = [c for c, k in zip(candidates, keys, strict=True) if k == best]
        if len(tied) == 1:
            return tied[0]
        return tied[next(self._turn) % len(tied)]


class LowestQueueDepth(_Rotating, BalancingPolicy, name="lowest_queue_depth"):
    def choose(self, candidates: Sequence[Endpoint], load: Load) -> Endpoint | None:
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        keys = [(c.queue_depth + load.local(c.key),) for c in candidates]
        return self._pick_min(candidates, keys)


class LeastOutstanding(_Rotating, BalancingPolicy, name="least_outstanding"):
    def __init__(self) -> None:
        super().__init__()
        self._fallback = LowestQueueDepth()

    def choose(self, candidates: Sequence[Endpoint], load: Load) -> Endpoint | None:
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        if not load.shared:
            return self._fallback.choose(candidates, load)
        keys = [(load.outstanding(c.key), c.queue_depth, -load.success_rate(c.key))
                for c in candidates]
        return self._pick_min(candidates, keys)


class RoundRobin(BalancingPolicy, name="round_robin"):
    def __init__(self) -> None:
        self._turn = itertools.count()

    def choose(self, candidates: Sequence[Endpoint], load: Load) -> Endpoint | None:
        if not candidates:
            return None
        return candidates[next(self._turn) % len(candidates)]
