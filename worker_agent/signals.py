"""Load signals derived from engine scrapes over a recent window.

`SignalWindow` keeps timestamped `EngineSample`s for a little longer than `window_s` and derives
`EngineSignals`: the gauges as last scraped (running, waiting, KV usage), and from the difference
between the newest sample and the one closest to `window_s` ago, requests/s and TTFT /
end-to-end p50/p95. A quantile needs at least two samples and one finished request in between;
otherwise it is None (unknown), never a made-up zero.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from worker_agent.engines.base import EngineSample
from worker_agent.histogram import Histogram, quantile


@dataclass(frozen=True, slots=True)
class EngineSignals:
    running: int | None = None
    waiting: int | None = None
    kv_cache_usage: float | None = None
    requests_per_s: float | None = None
    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None
    e2e_p50_s: float | None = None
    e2e_p95_s: float | None = None
    window_s: float | None = None  # the span rates and quantiles were computed over

    @property
    def queue_depth(self) -> int | None:
        """Requests the engine holds: running + waiting (what the autoscaler and router use)."""
        if self.running is None and self.waiting is None:
            return None
        return (self.running or 0) + (self.waiting or 0)


def _count(value: float | None) -> int | None:
    return None if value is None else max(0, round(value))


def _quantiles(new: Histogram | None, old: Histogram | None) -> tuple[float | None, float | None]:
    if new is None or old is None:
        return None, None
    delta = new.minus(old)
    return quantile(0.5, delta), quantile(0.95, delta)


class SignalWindow:
    def __init__(self, window_s: float) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self._samples: deque[tuple[float, EngineSample]] = deque()

    def add(self, now: float, sample: EngineSample) -> None:
        self._samples.append((now, sample))
        # Keep exactly one sample at or before the window's start: the baseline of the deltas.
        while len(self._samples) >= 2 and self._samples[1][0] <= now - self.window_s:
            self._samples.popleft()

    def clear(self) -> None:
        self._samples.clear()

    def latest(self) -> EngineSample | None:
        return self._samples[-1][1] if self._samples else None

    def signals(self) -> EngineSignals:
        if not self._samples:
            return EngineSignals()
        new_at, new = self._samples[-1]
        old_at, old = self._samples[0]
        current = EngineSignals(running=_count(new.running), waiting=_count(new.waiting),
                                kv_cache_usage=new.kv_cache_usage)
        span = new_at - old_at
        if span <= 0:
            return current
        rate = None
        if new.completed is not None and old.completed is not None:
            finished = new.completed - old.completed
            if finished < 0:  # the engine restarted: its counter began again from zero
                finished = new.completed
            rate = finished / span
        ttft_p50, ttft_p95 = _quantiles(new.ttft, old.ttft)
        e2e_p50, e2e_p95 = _quantiles(new.e2e, old.e2e)
        return EngineSignals(
            running=current.running, waiting=current.waiting,
            kv_cache_usage=current.kv_cache_usage, requests_per_s=rate,
            ttft_p50_s=ttft_p50, ttft_p95_s=ttft_p95, e2e_p50_s=e2e_p50, e2e_p95_s=e2e_p95,
            window_s=span,
        )
