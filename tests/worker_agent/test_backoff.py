"""The backoff grows, caps, jitters within bounds, never loops tight, and resets on success."""

from __future__ import annotations

import random

import pytest

from worker_agent.backoff import Backoff


def test_delays_double_up_to_the_cap_within_the_jitter_band() -> None:
    backoff = Backoff(1.0, 8.0, jitter=0.5, rng=random.Random(7))
    steps = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    for step in steps:
        delay = backoff.next_delay()
        assert step * 0.5 <= delay <= step
    assert backoff.failures == len(steps)


def test_jitter_spreads_agents_that_failed_together() -> None:
    delays = {Backoff(1.0, 30.0, rng=random.Random(seed)).next_delay() for seed in range(20)}
    assert len(delays) == 20


def test_reset_starts_again_from_the_base() -> None:
    backoff = Backoff(0.5, 10.0, jitter=0.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_a_very_long_streak_stays_at_the_cap() -> None:
    backoff = Backoff(0.1, 3.0, jitter=0.0)
    backoff.failures = 10_000
    assert backoff.next_delay() == 3.0


@pytest.mark.parametrize("base, maximum, jitter", [(0, 1, 0.5), (2, 1, 0.5), (1, 2, 1.0)])
def test_nonsense_parameters_are_refused(base: float, maximum: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        Backoff(base, maximum, jitter=jitter)
