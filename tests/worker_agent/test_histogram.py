"""Quantiles follow Prometheus's histogram_quantile, computed on deltas between snapshots."""

from __future__ import annotations

import math

import pytest

from worker_agent.histogram import Histogram, quantile
from worker_agent.promtext import parse_samples


def hist(*cumulative: tuple[float, float]) -> Histogram:
    return Histogram(tuple(cumulative), cumulative[-1][1], 0.0)


def test_quantile_interpolates_linearly_inside_the_bucket_holding_the_rank() -> None:
    h = hist((0.1, 10), (0.5, 30), (1.0, 40), (math.inf, 40))
    assert quantile(0.5, h) == pytest.approx(0.1 + 0.4 * (20 - 10) / 20)  # rank 20
    assert quantile(0.25, h) == pytest.approx(0.1)  # rank 10, top of the first bucket
    assert quantile(0.1, h) == pytest.approx(0.04)  # first bucket starts at 0
    assert quantile(0.95, h) == pytest.approx(0.5 + 0.5 * (38 - 30) / 10)


def test_rank_in_the_inf_bucket_answers_the_largest_finite_bound() -> None:
    h = hist((0.1, 1), (0.5, 2), (math.inf, 10))
    assert quantile(0.95, h) == 0.5


def test_no_observations_means_no_quantile() -> None:
    assert quantile(0.5, hist((0.1, 0), (math.inf, 0))) is None
    assert quantile(0.5, hist((math.inf, 5))) is None  # only +Inf: nothing to interpolate


def test_empty_buckets_below_the_rank_are_skipped_without_dividing_by_zero() -> None:
    h = hist((0.1, 0), (0.2, 0), (0.4, 4), (math.inf, 4))
    assert quantile(0.0, h) == pytest.approx(0.2)
    assert quantile(0.5, h) == pytest.approx(0.3)


def test_quantile_rejects_out_of_range_q() -> None:
    with pytest.raises(ValueError):
        quantile(1.5, hist((1.0, 1), (math.inf, 1)))


def test_delta_keeps_only_observations_since_the_older_snapshot() -> None:
    old = hist((0.1, 100), (1.0, 100), (math.inf, 100))  # 100 fast requests long ago
    new = hist((0.1, 100), (1.0, 110), (math.inf, 110))  # then 10 slow ones
    recent = new.minus(old)
    assert recent.observations == 10
    assert quantile(0.5, recent) == pytest.approx(0.55)
    assert quantile(0.5, new) < 0.1  # the all-time figure hides the slowdown


def test_a_counter_reset_makes_the_new_snapshot_the_delta() -> None:
    old = hist((0.1, 100), (math.inf, 120))
    new = hist((0.1, 3), (math.inf, 5))  # the engine restarted
    assert new.minus(old) == new


def test_series_of_several_engine_cores_are_merged_by_bound() -> None:
    text = ('t_bucket{engine="0",le="0.1"} 1\nt_bucket{engine="0",le="+Inf"} 2\n'
            't_bucket{engine="1",le="0.1"} 3\nt_bucket{engine="1",le="+Inf"} 3\n'
            't_count{engine="0"} 2\nt_count{engine="1"} 3\nt_sum{engine="0"} 1.5\n'
            't_sum{engine="1"} 0.1\n')
    h = Histogram.from_samples(parse_samples(text, {"t_bucket", "t_count", "t_sum"}), "t")
    assert h is not None
    assert h.buckets == ((0.1, 4.0), (math.inf, 5.0))
    assert h.count == 5 and h.sum == pytest.approx(1.6)


def test_a_histogram_without_inf_bucket_is_not_read() -> None:
    text = 't_bucket{le="0.1"} 1\n'
    assert Histogram.from_samples(parse_samples(text, {"t_bucket"}), "t") is None
