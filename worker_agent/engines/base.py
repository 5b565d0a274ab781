"""The engine adapter protocol: what the agent needs from an inference engine, behind one class.

An adapter knows one engine's HTTP surface: a health check, the models it serves, one cheap
warm-up request, how to turn its Prometheus page into an `EngineSample`, and the command line that
starts it in supervisor mode. Adapters register themselves by name when their module is imported:

    class SglangAdapter(EngineAdapter, name="sglang"):
        metric_names = frozenset({...})
        async def list_models(self) -> list[str]: ...
        async def warm_up(self) -> None: ...
        def parse_metrics(self, text: str) -> EngineSample: ...
        def command(self, launch: LaunchSpec) -> list[str]: ...

`worker_agent.engines` imports every module of its package, so adding an engine is adding one file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import orjson

from worker_agent.errors import EngineError
from worker_agent.histogram import Histogram


@dataclass(frozen=True, slots=True)
class EngineSample:
    """One scrape of the engine's metrics, as cumulative facts (deltas are taken later)."""

    running: float | None = None  # requests being computed now
    waiting: float | None = None  # requests queued in the engine
    kv_cache_usage: float | None = None  # 0..1
    completed: float | None = None  # cumulative finished requests (for requests/s)
    ttft: Histogram | None = None  # time to first token, seconds
    e2e: Histogram | None = None  # end-to-end request latency, seconds


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """What supervisor mode needs to build an engine's command line."""

    model_id: str
    host: str
    port: int
    tensor_parallel_size: int | None = None
    gpu_memory_utilization: float | None = None


_REGISTRY: dict[str, type[EngineAdapter]] = {}


class EngineAdapter(ABC):
    name: ClassVar[str]
    metric_names: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, *, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name is not None:
            if name in _REGISTRY:
                raise TypeError(f"engine adapter {name!r} is registered twice")
            cls.name = name
            _REGISTRY[name] = cls

    def __init__(self, base_url: str, model_id: str, http: httpx.AsyncClient, *,
                 timeout_s: float = 5.0, warmup_timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model_id = model_id
        self.http = http
        self.timeout_s = timeout_s
        self.warmup_timeout_s = warmup_timeout_s

    # -- the protocol -----------------------------------------------------------------------

    async def check_health(self) -> None:
        """Raise EngineError unless the engine says it is healthy (`GET /health` answers 200)."""
        await self._request("GET", "/health")

    @abstractmethod
    async def list_models(self) -> list[str]:
        """The model ids the engine serves."""

    @abstractmethod
    async def warm_up(self) -> None:
        """One cheap real request, so the first user request does not pay for lazy set-up."""

    async def scrape(self) -> EngineSample:
        response = await self._request("GET", "/metrics")
        try:
            return self.parse_metrics(response.text)
        except ValueError as exc:
            raise EngineError(f"unreadable metrics: {exc}") from exc

    @abstractmethod
    def parse_metrics(self, text: str) -> EngineSample:
        """Turn the engine's Prometheus text into an EngineSample (ValueError if malformed)."""

    @abstractmethod
    def command(self, launch: LaunchSpec) -> list[str]:
        """The command line that starts this engine (supervisor mode without --engine-cmd)."""

    # -- helpers for adapters ---------------------------------------------------------------

    async def _request(self, method: str, path: str, *, json: Any = None,
                       timeout_s: float | None = None) -> httpx.Response:
        try:
            response = await self.http.request(
                method, self.base_url + path,
                content=None if json is None else orjson.dumps(json),
                headers={"content-type": "application/json"} if json is not None else None,
                timeout=timeout_s or self.timeout_s,
            )
        except httpx.TimeoutException:
            raise EngineError(f"{method} {path} timed out") from None
        except httpx.HTTPError as exc:
            raise EngineError(f"{method} {path} failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise EngineError(f"{method} {path} answered {response.status_code}",
                              status=response.status_code)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._request(method, path, **kwargs)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise EngineError(f"{method} {path} did not answer JSON") from None


def adapter_class(name: str) -> type[EngineAdapter]:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise EngineError(f"unknown engine {name!r} (known: {known})") from None


def registered_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))
