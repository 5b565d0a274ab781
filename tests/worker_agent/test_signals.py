"""Derived load signals: recent windows, not all-time; unknown stays unknown."""

from __future__ import annotations

import math

import pytest

from worker_agent.engines.base import EngineSample
from worker_agent.histogram import Histogram
from worker_agent.signals import SignalWindow

BOUNDS = (0.1, 0.5, 1.0, 5.0, math.inf)


def cumulative(*per_bucket: int) -> Histogram:
    running, out = 0, []
    for bound, n in zip(BOUNDS, per_bucket, strict=True):
        running += n
        out.append((bound, float(running)))
    return Histogram(tuple(out), float(running), 0.0)


def sample(ttft: Histogram, completed: float, running: float = 1, waiting: float = 2
           ) -> EngineSample:
    return EngineSample(running=running, waiting=waiting, kv_cache_usage=0.3,
                        completed=completed, ttft=ttft, e2e=ttft)


def test_quantiles_and_rate_cover_the_last_window_only() -> None:
    window = SignalWindow(window_s=60)
    window.add(0, sample(cumulative(0, 0, 0, 0, 0), 0))
    window.add(30, sample(cumulative(0, 0, 0, 100, 0), 100))  # 100 slow requests early on
    window.add(90, sample(cumulative(0, 0, 0, 100, 0), 100))
    window.add(120, sample(cumulative(60, 0, 0, 100, 0), 160))  # then 60 fast ones
    signals = window.signals()
    # Baseline is the sample at t=30 (the last one at or before 120 - 60): slow ones excluded.
    assert signals.window_s == 90
    assert signals.requests_per_s == pytest.approx(60 / 90)
    assert signals.ttft_p95_s is not None and signals.ttft_p95_s <= 0.1
    assert signals.e2e_p50_s == pytest.approx(0.05)


def test_gauges_come_from_the_newest_sample() -> None:
    window = SignalWindow(window_s=10)
    window.add(0, sample(cumulative(0, 0, 0, 0, 0), 0, running=5, waiting=0))
    window.add(1, sample(cumulative(0, 0, 0, 0, 0), 0, running=2, waiting=7))
    signals = window.signals()
    assert (signals.running, signals.waiting, signals.queue_depth) == (2, 7, 9)
    assert signals.kv_cache_usage == 0.3


def test_one_sample_or_an_idle_window_gives_no_quantiles() -> None:
    window = SignalWindow(window_s=10)
    window.add(0, sample(cumulative(1, 1, 1, 1, 1), 5))
    only_one = window.signals()
    assert only_one.ttft_p95_s is None and only_one.requests_per_s is None
    assert only_one.queue_depth == 3
    window.add(5, sample(cumulative(1, 1, 1, 1, 1), 5))
    idle = window.signals()
    assert idle.ttft_p95_s is None and idle.requests_per_s == 0.0


def test_an_engine_restart_does_not_produce_negative_rates() -> None:
    window = SignalWindow(window_s=100)
    window.add(0, sample(cumulative(50, 0, 0, 0, 0), 500))
    window.add(10, sample(cumulative(2, 0, 0, 0, 0), 2))
    signals = window.signals()
    assert signals.requests_per_s == pytest.approx(0.2)
    assert signals.ttft_p50_s is not None and signals.ttft_p50_s <= 0.1


def test_missing_engine_series_stay_unknown() -> None:
    window = SignalWindow(window_s=10)
    window.add(0, EngineSample())
    window.add(1, EngineSample())
    signals = window.signals()
    assert signals.queue_depth is None and signals.kv_cache_usage is None
    assert signals.ttft_p95_s is None and signals.requests_per_s is None
