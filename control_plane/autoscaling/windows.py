"""Time-stamped sample windows with numpy smoothing (time is always a parameter).

Two smoothers, chosen per signal:

- `ewma(now)`: exponentially weighted mean with a half-life in *seconds* (weights 0.5^(age/h)),
  so irregular sampling (heartbeats every 10 s, control-plane ticks every few seconds) weighs by
  age, not by count. Used for queue depth and GPU utilisation: responsive, but one spike is damped.
- `percentile(q, now)`: the q-th percentile of the window. Used for latency, where the median of
  recent p95 readings ignores one slow heartbeat but follows a sustained breach within half a
  window.
"""

from __future__ import annotations

import collections

import numpy as np


class SampleWindow:
    def __init__(self, *, window_s: float, half_life_s: float) -> None:
        if window_s <= 0 or half_life_s <= 0:
            raise ValueError("window_s and half_life_s must be > 0")
        self.window_s = window_s
        self.half_life_s = half_life_s
        self._samples: collections.deque[tuple[float, float]] = collections.deque()

    def add(self, now: float, value: float) -> None:
        self._samples.append((now, float(value)))
        self._prune(now)

    def __len__(self) -> int:
        return len(self._samples)

    def _arrays(self, now: float) -> tuple[np.ndarray, np.ndarray] | None:
        self._prune(now)
        if not self._samples:
            return None
        data = np.asarray(self._samples, dtype=float)
        return data[:, 0], data[:, 1]

    def ewma(self, now: float) -> float | None:
        arrays = self._arrays(now)
        if arrays is None:
            return None
        times, values = arrays
        weights = np.power(0.5, np.maximum(now - times, 0.0) / self.half_life_s)
        return float(np.sum(weights * values) / np.sum(weights))

    def percentile(self, q: float, now: float) -> float | None:
        arrays = self._arrays(now)
        if arrays is None:
            return None
        return float(np.percentile(arrays[1], q))

    def latest(self) -> float | None:
        return self._samples[-1][1] if self._samples else None

    def _prune(self, now: float) -> None:
        while self._samples and now - self._samples[0][0] > self.window_s:
            self._samples.popleft()
