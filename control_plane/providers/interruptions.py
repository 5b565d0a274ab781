"""Which (instance type, zone) capacity pools to avoid for a while, from what happened to them.

Spot interruptions are correlated: interruptions of one instance type in one zone land within three
minutes of each other in over 92% of cases (FACTS). So one interruption makes its pool *suspect*
for `suspect_for_s` (new replicas, including the replacement, go elsewhere if they can), and
repeated interruptions *demote* it for `demote_for_s`. A capacity error
(InsufficientInstanceCapacity and kin) demotes the pool for `capacity_error_demote_s`: AWS just
told us it has none there.

Avoiding is a preference, never a ban: placement tries demoted pools last, so a pool with only
demoted capacity still gets replicas rather than none. Time is always a parameter (`now`).

    penalty   meaning                                   placement order
    0         nothing recent                            first
    1         suspect (one recent interruption)         after clean pools
    2         demoted (repeated interruptions, or ICE)  last
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

PoolKey = tuple[str, str | None]  # (instance type, zone)

CLEAN, SUSPECT, DEMOTED = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Demotion:
    instance_type: str
    zone: str | None
    until: float
    reason: str


class DemotionTracker:
    def __init__(
        self,
        *,
        suspect_for_s: float = 180.0,
        interruption_window_s: float = 600.0,
        interruptions_to_demote: int = 2,
        demote_for_s: float = 1800.0,
        capacity_error_demote_s: float = 300.0,
    ) -> None:
        if interruptions_to_demote < 1:
            raise ValueError("interruptions_to_demote must be >= 1")
        self.suspect_for_s = suspect_for_s
        self.interruption_window_s = interruption_window_s
        self.interruptions_to_demote = interruptions_to_demote
        self.demote_for_s = demote_for_s
        self.capacity_error_demote_s = capacity_error_demote_s
        self._interruptions: dict[PoolKey, collections.deque[float]] = {}
        self._demoted: dict[PoolKey, Demotion] = {}

    def record_interruption(self, instance_type: str, zone: str | None, now: float) -> bool:
        """Note a Spot interruption (notice or rebalance); True if it demoted the pool."""
        key = (instance_type, zone)
        times = self._interruptions.setdefault(key, collections.deque())
        times.append(now)
        self._prune(times, now)
        if len(times) >= self.interruptions_to_demote:
            self._demote(key, now + self.demote_for_s,
                         f"{len(times)} interruptions within {self.interruption_window_s:.0f}s")
            return True
        return False

    def record_capacity_error(self, instance_type: str, zone: str | None, now: float,
                              code: str = "InsufficientInstanceCapacity") -> None:
        self._demote((instance_type, zone), now + self.capacity_error_demote_s, code)

    def penalty(self, instance_type: str, zone: str | None, now: float) -> int:
        key = (instance_type, zone)
        demotion = self._demoted.get(key)
        if demotion is not None:
            if demotion.until > now:
                return DEMOTED
            del self._demoted[key]
        times = self._interruptions.get(key)
        if times and any(now - t < self.suspect_for_s for t in times):
            return SUSPECT
        return CLEAN

    def demotions(self, now: float) -> list[Demotion]:
        """Pools demoted right now (for events and the dashboard)."""
        return sorted((d for d in self._demoted.values() if d.until > now),
                      key=lambda d: (d.instance_type, d.zone or ""))

    def _demote(self, key: PoolKey, until: float, reason: str) -> None:
        current = self._demoted.get(key)
        if current is None or current.until < until:
            self._demoted[key] = Demotion(key[0], key[1], until, reason)

    def _prune(self, times: collections.deque[float], now: float) -> None:
        while times and now - times[0] > self.interruption_window_s:
            times.popleft()
