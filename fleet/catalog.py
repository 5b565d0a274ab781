"""What operators configure through the admin API: API keys, pools and routes.

    Route "gpt-4o-mini": targets [ {"pool": "qwen14b"}, {"upstream": "https://api.openai.com/v1",
                                   "api_key_env": "OPENAI_API_KEY", "model": "gpt-4o-mini"} ],
                         stream_resume (default true), cache {ttl_s, shared, ...} (default off)
    Route "auto":        targets [ {"auto": {"small": "qwen7b", "large": "qwen72b",
                                             "threshold": 0.7}} ]   by complexity score
    Pool  "qwen14b":     model_id, engine, provider, min/max replicas, scaling targets, prices

The first target with ready capacity serves a request. Upstream secrets are named by environment
variable and read by the router at call time; they are never stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fleet.schemas import ENGINE_PATTERN, ID_PATTERN, check_http_url
from fleet.validation import ValidationError, rule

ENV_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,127}"
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key as stored: only the SHA-256 of the key, never the key itself."""

    id: str
    name: str
    key_hash: str
    prefix: str  # the first characters, so an operator can tell keys apart
    created_at: float
    models: list[str] | None = None  # allow-list; None means every model
    rpm: int | None = None  # requests per minute, shared by all router replicas
    tpm: int | None = None  # tokens per minute (prompt + completion)

    def public(self) -> dict[str, object]:
        return {"id": self.id, "object": "api_key", "name": self.name, "prefix": self.prefix,
                "created_at": self.created_at, "models": self.models, "rpm": self.rpm,
                "tpm": self.tpm}


@dataclass(frozen=True, slots=True)
class CreateKeyRequest:
    name: str = rule(min_len=1, max_len=128)
    models: list[str] | None = rule(None, max_len=256)
    rpm: int | None = rule(None, ge=1, le=10_000_000)
    tpm: int | None = rule(None, ge=1, le=10_000_000_000)


@dataclass(frozen=True, slots=True)
class PoolTarget:
    pool: str = rule(pattern=NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    upstream: str = rule(max_len=512, check=check_http_url)  # base URL ending in /v1
    api_key_env: str | None = rule(None, pattern=ENV_NAME_PATTERN)
    model: str | None = rule(None, pattern=ID_PATTERN)  # rewrite the request's model


@dataclass(frozen=True, slots=True)
class AutoChoice:
    """Send each request to `small` or `large` by its complexity score (router/complexity.py)."""

    small: str = rule(pattern=ID_PATTERN)  # a pool name, or a model (its route, pools, workers)
    large: str = rule(pattern=ID_PATTERN)
    threshold: float = rule(0.7, ge=0.0, le=1.0)  # scores >= threshold go to `large`

    def __post_init__(self) -> None:
        if self.small == self.large:
            raise ValidationError("small and large must differ", "small")


@dataclass(frozen=True, slots=True)
class AutoTarget:
    auto: AutoChoice


RouteTarget = PoolTarget | UpstreamTarget | AutoTarget


@dataclass(frozen=True, slots=True)
class CacheOptions:
    """A route's response cache (router/cache.py): deterministic requests only."""

    ttl_s: float = rule(300.0, ge=1.0, le=86_400.0)
    shared: bool = False  # one entry for every API key (else entries are per key)
    max_entries: int = rule(10_000, ge=1, le=10_000_000)  # per route; least recently used go
    max_entry_bytes: int = rule(1 << 20, ge=1024, le=16 << 20)  # larger answers are not kept


@dataclass(frozen=True, slots=True)
class Route:
    targets: list[RouteTarget] = rule(min_len=1, max_len=16)
    # Resume a stream on another worker of the same pool when its worker dies mid-stream.
    stream_resume: bool = True
    cache: CacheOptions | None = None  # off unless given

    def __post_init__(self) -> None:
        autos = [i for i, t in enumerate(self.targets) if isinstance(t, AutoTarget)]
        if len(autos) > 1:
            raise ValidationError("a route may have at most one auto target",
                                  f"targets[{autos[1]}]")


@dataclass(frozen=True, slots=True)
class Pool:
    model_id: str = rule(pattern=ID_PATTERN)
    engine: str = rule("vllm", pattern=ENGINE_PATTERN)
    provider: Literal["local", "aws"] = "local"
    min_replicas: int = rule(0, ge=0, le=1000)
    max_replicas: int = rule(1, ge=0, le=1000)
    target_queue_depth: float = rule(8.0, ge=0.1, le=100_000.0)  # per replica
    ttft_p95_slo_ms: float | None = rule(None, ge=1.0, le=600_000.0)
    gpu_util_target: float | None = rule(None, ge=0.05, le=1.0)
    scale_to_zero_after_s: float | None = rule(600.0, ge=0.0, le=86_400.0 * 7)
    instance_types: list[str] = rule(default_factory=list, max_len=32)
    max_price_per_hour: float | None = rule(None, ge=0.0, le=10_000.0)  # cap for the pool
    on_demand_fallback: bool = False
    engine_args: list[str] = rule(default_factory=list, max_len=64)  # extra engine flags

    def __post_init__(self) -> None:
        if self.min_replicas > self.max_replicas:
            raise ValidationError(
                f"min_replicas ({self.min_replicas}) must be <= max_replicas "
                f"({self.max_replicas})", "min_replicas")
        if self.provider == "aws" and not self.instance_types:
            raise ValidationError("instance_types is required for the aws provider",
                                  "instance_types")
