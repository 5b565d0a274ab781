"""Cumulative histograms as engines expose them, their deltas, and quantiles of a delta.

An engine's `_bucket` series count every observation since it started: a p95 computed from them
is an all-time figure that a burst of slow requests an hour ago still drags. The agent keeps
snapshots and computes quantiles from the *difference* between the newest snapshot and one about a
window ago, which is what `histogram_quantile(0.95, rate(x_bucket[1m]))` gives in Prometheus.

`quantile` follows Prometheus's `histogram_quantile`: find the bucket holding the rank, interpolate
linearly inside it (the lower bound of the first bucket is 0 when its bound is positive), and
answer the largest finite bound when the rank falls in the `+Inf` bucket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from worker_agent.promtext import Sample


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative counts by upper bound (sorted, ending with +Inf), summed over all series."""

    buckets: tuple[tuple[float, float], ...]
    count: float
    sum: float

    @classmethod
    def from_samples(cls, samples: dict[str, list[Sample]], name: str) -> Histogram | None:
        """Merge every series of histogram `name` (one per engine core or label set) by bound."""
        bucket_samples = samples.get(f"{name}_bucket")
        if not bucket_samples:
            return None
        by_bound: dict[float, float] = {}
        for sample in bucket_samples:
            bound_text = sample.labels.get("le")
            if bound_text is None:
                continue
            bound = float(bound_text)
            by_bound[bound] = by_bound.get(bound, 0.0) + sample.value
        if math.inf not in by_bound:
            return None  # not a well-formed histogram: every one ends with le="+Inf"
        buckets = tuple(sorted(by_bound.items()))
        count = math.fsum(s.value for s in samples.get(f"{name}_count", ()))
        total = math.fsum(s.value for s in samples.get(f"{name}_sum", ()))
        return cls(buckets, count or by_bound[math.inf], total)

    def minus(self, older: Histogram) -> Histogram:
        """Observations made since `older`. If any count went down the engine restarted (counters
        reset): everything it counted since then is new, so the delta is `self` itself."""
        if [b for b, _ in self.buckets] != [b for b, _ in older.buckets]:
            return self  # a different layout means a different engine process
        deltas = [(bound, new - old) for (bound, new), (_, old)
                  in zip(self.buckets, older.buckets, strict=True)]
        if any(d < 0 for _, d in deltas) or self.count < older.count:
            return self
        return Histogram(tuple(deltas), self.count - older.count, self.sum - older.sum)

    @property
    def observations(self) -> float:
        return self.buckets[-1][1] if self.buckets else 0.0


def quantile(q: float, hist: Histogram) -> float | None:
    """The q-quantile (0..1) of the observations in `hist`; None when it holds none."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    total = hist.observations
    finite = hist.buckets[:-1]
    if total <= 0 or not finite:
        return None
    rank = q * total
    previous_bound = 0.0  # the first bucket's lower bound, as in Prometheus
    previous_count = 0.0
    for index, (bound, count) in enumerate(finite):
        # `count > previous_count` skips empty buckets, where interpolation would divide by zero.
        if count >= rank and count > previous_count:
            if index == 0 and bound <= 0:
                return bound
            share = (rank - previous_count) / (count - previous_count)
            return previous_bound + (bound - previous_bound) * share
        previous_bound, previous_count = bound, count
    return finite[-1][0]  # the rank is in the +Inf bucket: no upper bound to interpolate to
