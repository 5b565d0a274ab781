"""Fault injection, set by flags at start and changed at run time through `/admin/faults`.

    error_rate                 fraction of inference requests answered 500 (engine error shape)
    hang_rate                  fraction accepted and never answered, until the client goes away
    slow_factor                multiplier on every latency of the model (1.0 = as configured)
    crash_after                N: serve N more inference requests, exit hard on the one after
    abort_stream_after_tokens  N: streams close their connection after N tokens, no [DONE]

Each inference request draws one number from an RNG seeded by `--seed`: below `error_rate` it
fails, below `error_rate + hang_rate` it hangs. The same traffic in the same order therefore meets
the same faults on every run. `crash_after` counts inference requests from the moment it is set
(at start, or by the PUT that sets it).
"""

from __future__ import annotations

import enum
import random
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from simulator.errors import RequestError


class Decision(enum.Enum):
    SERVE = "serve"
    ERROR = "error"
    HANG = "hang"


@dataclass(frozen=True)
class FaultConfig:
    error_rate: float = 0.0
    hang_rate: float = 0.0
    slow_factor: float = 1.0
    crash_after: int | None = None
    abort_stream_after_tokens: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def merged(self, patch: Any) -> FaultConfig:
        """This config with the fields of a JSON object replaced; bad input raises RequestError."""
        if not isinstance(patch, dict):
            raise RequestError(400, "the body must be a JSON object", param=None)
        known = {f.name for f in fields(self)}
        unknown = sorted(set(patch) - known)
        if unknown:
            raise RequestError(400, f"unknown fault field(s): {', '.join(unknown)}",
                               param=unknown[0])
        values: dict[str, Any] = {}
        for name in ("error_rate", "hang_rate"):
            if name in patch:
                values[name] = _number(patch[name], name, low=0.0, high=1.0)
        if "slow_factor" in patch:
            values["slow_factor"] = _number(patch["slow_factor"], "slow_factor", low=0.001)
        for name in ("crash_after", "abort_stream_after_tokens"):
            if name in patch:
                values[name] = _count_or_none(patch[name], name)
        config = replace(self, **values)
        if config.error_rate + config.hang_rate > 1.0:
            raise RequestError(
                400, f"error_rate ({config.error_rate}) + hang_rate ({config.hang_rate}) "
                "must be <= 1", param="hang_rate")
        return config


def _number(value: Any, name: str, *, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(400, f"{name} must be a number, got {value!r}", param=name)
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise RequestError(400, f"{name} must be {bounds}, got {value!r}", param=name)
    return float(value)


def _count_or_none(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RequestError(400, f"{name} must be a non-negative integer or null, got {value!r}",
                           param=name)
    return value


class FaultInjector:
    def __init__(self, config: FaultConfig, seed: int) -> None:
        self.initial = config
        self.config = config
        # Its own stream, so that changing the latency jitter does not move the fault draws.
        self._rng = random.Random(f"faults:{seed}")
        self._since_crash_set = 0

    def update(self, patch: Any) -> FaultConfig:
        config = self.config.merged(patch)
        if isinstance(patch, dict) and "crash_after" in patch:
            self._since_crash_set = 0
        self.config = config
        return config

    def reset(self) -> FaultConfig:
        """Back to the faults given at start (the crash count starts again too)."""
        self.config = self.initial
        self._since_crash_set = 0
        return self.config

    def must_crash(self) -> bool:
        """Count one inference request; True if it is the one after `crash_after` requests."""
        limit = self.config.crash_after
        if limit is None:
            return False
        self._since_crash_set += 1
        return self._since_crash_set > limit

    def draw(self) -> Decision:
        config = self.config
        if config.error_rate == 0 and config.hang_rate == 0:
            return Decision.SERVE
        roll = self._rng.random()
        if roll < config.error_rate:
            return Decision.ERROR
        if roll < config.error_rate + config.hang_rate:
            return Decision.HANG
        return Decision.SERVE
