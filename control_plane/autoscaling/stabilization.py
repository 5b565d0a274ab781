"""Stabilization: turn a stream of raw recommendations into targets that do not flap.

Two mechanisms, both per pool, both driven by the `now` the caller passes:

1. Windows, as the Kubernetes HPA does: every recommendation is recorded; scaling up goes to the
   *lowest* recommendation of the last `up_window_s` (0 s: the current one), scaling down to the
   *highest* of the last `down_window_s` (300 s). A dip shorter than the down window never removes
   a replica.
2. Consecutive periods, as SkyServe does: a change needs `up_periods` (1) consecutive
   recommendations above the current count, or `down_periods` (3) below it. This guards short
   windows (and tests that set them to 0) against single-tick noise.

    current < up_rec and up streak reached          -> up_rec
    current > down_rec and down streak reached      -> down_rec
    otherwise                                        -> current

`bypass_up` / `bypass_down` skip both mechanisms for decisions that have their own stabilization
(scale from zero on cold demand; scale to zero after the idle time).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class StabilizationConfig:
    up_window_s: float = 0.0
    down_window_s: float = 300.0
    up_periods: int = 1
    down_periods: int = 3

    def __post_init__(self) -> None:
        if self.up_window_s < 0 or self.down_window_s < 0:
            raise ValueError("stabilization windows must be >= 0")
        if self.up_periods < 1 or self.down_periods < 1:
            raise ValueError("up_periods and down_periods must be >= 1")


@dataclass
class _History:
    recommendations: collections.deque[tuple[float, int]] = field(
        default_factory=collections.deque)
    up_streak: int = 0
    down_streak: int = 0
    last_target: int | None = None


@dataclass(frozen=True, slots=True)
class Stabilized:
    target: int
    up_recommendation: int
    down_recommendation: int
    up_streak: int
    down_streak: int
    held_by: str | None  # why the raw recommendation was not followed, if it was not


class Stabilizer:
    def __init__(self, config: StabilizationConfig = StabilizationConfig()) -> None:
        self.config = config
        self._pools: dict[str, _History] = {}

    def last_target(self, pool: str) -> int | None:
        history = self._pools.get(pool)
        return history.last_target if history else None

    def forget(self, pool: str) -> None:
        self._pools.pop(pool, None)

    def apply(self, pool: str, current: int, recommendation: int, now: float, *,
              bypass_up: bool = False, bypass_down: bool = False) -> Stabilized:
        history = self._pools.setdefault(pool, _History())
        recs = history.recommendations
        recs.append((now, recommendation))
        horizon = max(self.config.up_window_s, self.config.down_window_s)
        while recs and now - recs[0][0] > horizon:
            recs.popleft()
        up_rec = min(r for t, r in recs if now - t <= self.config.up_window_s)
        down_rec = max(r for t, r in recs if now - t <= self.config.down_window_s)
        history.up_streak = history.up_streak + 1 if recommendation > current else 0
        history.down_streak = history.down_streak + 1 if recommendation < current else 0

        held_by = None
        target = current
        if recommendation > current and bypass_up:
            target = recommendation
        elif recommendation < current and bypass_down:
            target = recommendation
        elif current < up_rec:
            if history.up_streak >= self.config.up_periods:
                target = up_rec
            else:
                held_by = (f"scale-up needs {self.config.up_periods} consecutive periods "
                           f"(at {history.up_streak})")
        elif current > down_rec:
            if history.down_streak >= self.config.down_periods:
                target = down_rec
            else:
                held_by = (f"scale-down needs {self.config.down_periods} consecutive periods "
                           f"(at {history.down_streak})")
        if held_by is None and target != recommendation:
            if recommendation > current:
                held_by = (f"up window {self.config.up_window_s:.0f}s: lowest recent "
                           f"recommendation is {up_rec}")
            elif recommendation < current:
                held_by = (f"down window {self.config.down_window_s:.0f}s: highest recent "
                           f"recommendation is {down_rec}")
        return Stabilized(target, up_rec, down_rec, history.up_streak, history.down_streak,
                          held_by)

    def record_target(self, pool: str, target: int) -> None:
        self._pools.setdefault(pool, _History()).last_target = target
