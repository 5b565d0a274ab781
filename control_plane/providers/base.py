"""Capacity providers: one small interface to launch, terminate, list and price GPU machines.

    control plane ── LaunchRequest ──► provider.launch()  ──► LaunchResult(instances, attempts)
                  ── instance ids ──► provider.terminate()
                  ◄── Instance facts ─ provider.list_instances()   (what is really running, by tag)
                  ◄── $/h ──────────── provider.price(instance_type)

A provider is registered by name (`local`, `aws`) through `__init_subclass__`, like SkyServe's
policies: `CapacityProvider.registered()` lists them, `CapacityProvider.lookup(name)` returns the
class. Each provider takes its own frozen config dataclass.

`max_price_per_hour` in a `LaunchRequest` is a ceiling the *control plane* enforces: a provider
skips instance types whose known price is above it (and, when a ceiling is set, types whose price
it cannot tell). It is never sent to AWS as a Spot maximum price: AWS states that setting one makes
interruptions more likely, and a bid does not cap spending anyway (the control plane does that).

Errors (one root):

    CapacityError
     ├── InsufficientCapacity     nothing could be launched; `attempts` says what was tried and why
     │    └── PriceCapExceeded    every candidate was priced above the ceiling (nothing was tried)
     ├── ProviderUnavailable      the provider's API could not be reached, timed out or throttled
     └── ProviderRejected         the provider refused the request: credentials, permissions, AMI,
                                  subnet or parameters; retrying will not help, the config must
                                  change
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Market = Literal["spot", "on-demand"]
MARKETS: tuple[Market, ...] = ("spot", "on-demand")

# Tags every managed instance carries (AWS) or records (local): reconciliation reads them back.
TAG_CLUSTER = "flotilla:cluster"
TAG_POOL = "flotilla:pool"
TAG_INSTANCE_ID = "flotilla:instance-id"
TAG_MANAGED = "flotilla:managed"
TAG_MODEL = "flotilla:model"

_SAFE_VALUE = re.compile(r"[A-Za-z0-9_.:/@+=,%-]*")


class CapacityError(Exception):
    """Root of the capacity providers' errors."""


@dataclass(frozen=True, slots=True)
class LaunchAttempt:
    """One try at one capacity pool: an instance type in a zone, on one market."""

    instance_type: str
    zone: str | None
    market: Market
    outcome: str  # "launched", or the provider's error code (InsufficientInstanceCapacity, ...)
    message: str = ""

    @property
    def launched(self) -> bool:
        return self.outcome == "launched"


class InsufficientCapacity(CapacityError):
    """No replica could be launched; `attempts` lists every capacity pool tried and its answer."""

    def __init__(self, message: str, attempts: Sequence[LaunchAttempt] = ()) -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)


class PriceCapExceeded(InsufficientCapacity):
    """Every candidate instance type is priced above the ceiling (or unpriced under a ceiling)."""


class ProviderUnavailable(CapacityError):
    """The provider's API could not be reached in time, or throttled us; try again later."""


class ProviderRejected(CapacityError):
    """The provider refused the request itself (auth, permissions, AMI, parameters)."""


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """Launch `count` replicas of a pool. Built by the control plane from the pool's spec."""

    pool: str
    model_id: str
    engine: str  # vllm | tei
    count: int
    control_plane_url: str
    instance_types: tuple[str, ...] = ()  # in priority order; empty: the provider's default
    # Ceiling on one instance's price ($/h), enforced here, never sent as a Spot bid.
    max_price_per_hour: float | None = None
    on_demand_fallback: bool = False
    zones: tuple[str, ...] = ()  # restrict to these zones; empty: every zone the provider has
    engine_args: tuple[str, ...] = ()  # extra engine flags (vLLM / TEI command line)
    tensor_parallel_size: int | None = None
    gpu_memory_utilization: float | None = None
    # The pool's live instances, so new replicas spread over the (type, zone) pools they avoid.
    existing: tuple[Instance, ...] = ()

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")
        if self.max_price_per_hour is not None and self.max_price_per_hour < 0:
            raise ValueError(f"max_price_per_hour must be >= 0, got {self.max_price_per_hour}")
        for name in ("pool", "model_id", "engine", "control_plane_url"):
            check_safe_value(name, getattr(self, name))
        for arg in self.engine_args:
            if "\n" in arg or "\r" in arg or "\x00" in arg:
                raise ValueError(f"engine_args must not contain line breaks: {arg!r}")


def check_safe_value(name: str, value: str) -> None:
    """Refuse values that could break out of a tag, an env file or a shell line."""
    if not value or not _SAFE_VALUE.fullmatch(value):
        raise ValueError(f"{name} has characters that are not allowed here: {value!r}")


@dataclass(frozen=True, slots=True)
class Instance:
    """Facts about one machine a provider launched (the `instances` store document, plus state).

    `state` is what the provider says right now (pending, running, shutting-down, ... for AWS;
    booting, running, failed for local); it is not stored, since it would drift from the truth.
    """

    instance_id: str  # ours: the agent's INSTANCE_ID, the `flotilla:instance-id` tag
    provider: str  # local | aws
    provider_instance_id: str  # i-0123... for AWS
    pool: str
    instance_type: str
    zone: str | None
    market: Market
    private_ip: str | None
    launched_at: float
    price_per_hour: float | None  # None: unknown (the cost is then unknown, never guessed)
    model_id: str | None = None
    state: str = "unknown"
    details: Mapping[str, Any] = field(default_factory=dict)  # provider-specific (ports, pids)

    DOC_FIELDS: ClassVar[tuple[str, ...]] = (
        "instance_id", "provider", "provider_instance_id", "pool", "instance_type", "zone",
        "market", "private_ip", "launched_at", "price_per_hour", "model_id", "details")

    def to_doc(self) -> dict[str, Any]:
        """The document kept in the store collection `instances` (doc id = instance_id)."""
        doc = {name: getattr(self, name) for name in self.DOC_FIELDS}
        doc["details"] = dict(self.details)
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], *, state: str = "unknown") -> Instance:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in doc.items() if k in known and k != "state"}
        return cls(**values, state=state)

    def replace(self, **changes: Any) -> Instance:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class LaunchResult:
    """What a launch produced: the instances started and every attempt, failed ones included."""

    instances: tuple[Instance, ...]
    attempts: tuple[LaunchAttempt, ...] = ()

    @property
    def failures(self) -> tuple[LaunchAttempt, ...]:
        return tuple(a for a in self.attempts if not a.launched)


class CapacityProvider:
    """The interface every provider implements; subclasses register under a name.

        class LocalProvider(CapacityProvider, name="local"): ...
        CapacityProvider.lookup("local")(config)
    """

    name: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type[CapacityProvider]]] = {}

    def __init_subclass__(cls, *, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name is not None:
            if name in CapacityProvider._registry:
                raise ValueError(f"capacity provider {name!r} is registered twice")
            cls.name = name
            CapacityProvider._registry[name] = cls

    @classmethod
    def lookup(cls, name: str) -> type[CapacityProvider]:
        try:
            return CapacityProvider._registry[name]
        except KeyError:
            known = ", ".join(sorted(CapacityProvider._registry)) or "none"
            raise KeyError(f"unknown capacity provider {name!r} (known: {known})") from None

    @classmethod
    def registered(cls) -> list[str]:
        return sorted(CapacityProvider._registry)

    async def launch(self, request: LaunchRequest) -> LaunchResult:
        """Start `request.count` replicas; partial success returns what started.

        Raises InsufficientCapacity (or PriceCapExceeded) when nothing could start.
        """
        raise NotImplementedError

    async def terminate(self, instance_ids: Sequence[str]) -> list[str]:
        """Release instances by our instance id; returns the ids it found and released.

        Idempotent: ids already gone are skipped. Only instances this provider manages (for this
        cluster) are ever touched."""
        raise NotImplementedError

    async def list_instances(self, pool: str | None = None) -> list[Instance]:
        """The live instances this provider manages for this cluster (optionally one pool)."""
        raise NotImplementedError

    async def price(self, instance_type: str, *, market: Market = "spot",
                    zone: str | None = None) -> float | None:
        """$/h for one instance, or None when the provider cannot tell."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release clients and owned tasks. Idempotent."""

    async def __aenter__(self) -> CapacityProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
