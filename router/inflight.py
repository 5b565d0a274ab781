"""In-flight requests per worker, counted across router replicas without a store call per request.

Each replica counts its own requests per worker locally (`start` / `finish`: two dict updates).
Every report period (default 0.25 s) the reporter publishes those counts in this replica's
`RouterReport` and, in the same cycle, reads the other replicas' reports (reporting.py). The load
a policy sees for worker w is

    outstanding(w) = own live count(w) + sum of the other replicas' last reported count(w)

How stale: another replica's share is at most one report period plus one store round trip old;
reports that stopped changing for `peer_stale_s` (a replica that died) are ignored. What it costs:
nothing per request; per period, one write and one read of the `routers` collection per replica.
The imbalance bound this gives: a worker can receive at most the requests the *other* replicas
started on it during one period before this replica learns of them; with R replicas each
starting r requests/s on a pool, the error of outstanding(w) is at most (R - 1) * r * period
(e.g. 2 replicas at 200 req/s, 0.25 s: 50 requests spread over the pool's workers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


class InflightBook:
    def __init__(self, success_rate: Callable[[str], float] | None = None) -> None:
        self._local: dict[str, int] = {}
        self._peers: dict[str, int] = {}
        self._success_rate = success_rate
        # Whether the other replicas' counts are known; the reporter clears it when it could not
        # read the store for a few periods (policies then fall back to queue depth).
        self.shared = True

    # the hot path --------------------------------------------------------------------------
    def start(self, key: str) -> None:
        self._local[key] = self._local.get(key, 0) + 1

    def finish(self, key: str) -> None:
        count = self._local.get(key, 0) - 1
        if count > 0:
            self._local[key] = count
        else:
            self._local.pop(key, None)

    # the Load protocol (balancing.py) --------------------------------------------------------
    def local(self, key: str) -> int:
        return self._local.get(key, 0)

    def outstanding(self, key: str) -> int:
        return self._local.get(key, 0) + self._peers.get(key, 0)

    def success_rate(self, key: str) -> float:
        return 1.0 if self._success_rate is None else self._success_rate(key)

    # the reporter ----------------------------------------------------------------------------
    def local_counts(self) -> dict[str, int]:
        return dict(self._local)

    def peer_counts(self) -> dict[str, int]:
        return dict(self._peers)

    def set_peers(self, counts: Mapping[str, int]) -> None:
        self._peers = {k: v for k, v in counts.items() if v > 0}

    def total_local(self) -> int:
        return sum(self._local.values())
