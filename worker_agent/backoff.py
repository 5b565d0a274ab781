"""Exponential backoff with jitter, as a small object the retry loops own.

    delay(n) = uniform(cap_n * (1 - jitter), cap_n)      cap_n = min(maximum, base * factor**n)

Jitter spreads the retries of many agents after a control-plane outage (a thousand workers must
not all come back in the same millisecond); keeping the lower bound at `1 - jitter` of the step
means a streak of failures never degenerates into a tight loop, whatever the random draws.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self,
        base: float,
        maximum: float,
        *,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if base <= 0 or maximum < base:
            raise ValueError(f"backoff needs 0 < base <= maximum, got {base}, {maximum}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.base = base
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()
        self.failures = 0

    def step(self) -> float:
        """The un-jittered delay for the current streak of failures."""
        # Cap the exponent: factor ** 1000 would overflow long before a streak that long matters.
        return min(self.maximum, self.base * self.factor ** min(self.failures, 64))

    def next_delay(self) -> float:
        """Count one more failure and return how long to wait before the next attempt."""
        ceiling = self.step()
        self.failures += 1
        return self._rng.uniform(ceiling * (1.0 - self.jitter), ceiling)

    def reset(self) -> None:
        """A success ends the streak: the next failure starts again from `base`."""
        self.failures = 0
