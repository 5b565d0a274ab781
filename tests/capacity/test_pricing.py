"""Cost accounting and job estimates: known inputs give exact figures, unknown ones say so."""

from __future__ import annotations

import pytest

from control_plane.pricing import (
    InstanceOption,
    Throughput,
    UpstreamPrice,
    Usage,
    cost_so_far,
    estimate_job,
    usage_cost,
)


def test_instance_cost_is_price_times_hours_run() -> None:
    assert usage_cost(Usage("a", 0.9, started_at=0, ended_at=7200), now=10_000) == \
        pytest.approx(1.8)
    assert usage_cost(Usage("b", 0.9, started_at=0), now=1800) == pytest.approx(0.45)
    assert usage_cost(Usage("c", None, started_at=0), now=1800) is None


def test_cost_so_far_totals_priced_instances_and_names_unpriced_ones() -> None:
    summary = cost_so_far([Usage("a", 1.0, 0, 3600), Usage("b", 0.5, 0), Usage("c", None, 0)],
                          now=7200)
    assert summary.total_usd == pytest.approx(1.0 + 1.0)
    assert summary.per_hour_now == pytest.approx(0.5)
    assert summary.running == 2
    assert summary.unpriced == ("c",) and not summary.complete


def test_job_estimate_compares_instance_types_with_an_upstream_api() -> None:
    options = [
        InstanceOption("g6.2xlarge", 0.80, Throughput(1000.0, 20_000.0), startup_s=600),
        InstanceOption("g5.2xlarge", 0.60, Throughput(500.0, 10_000.0), replicas=2),
    ]
    upstream = UpstreamPrice("openai:gpt-4o-mini", input_usd_per_mtok=0.15,
                             output_usd_per_mtok=0.60)
    job = estimate_job(20_000_000, 3_600_000, options, upstream)
    g6, g5 = job.options
    # g6: 600 s start + 3.6M/1000 + 20M/20000 = 600 + 3600 + 1000 s
    assert g6.hours == pytest.approx(5200 / 3600)
    assert g6.cost_usd == pytest.approx(0.80 * 5200 / 3600)
    # g5 x2: (7200 + 2000) / 2 s on two machines
    assert g5.hours == pytest.approx(4600 / 3600)
    assert g5.cost_usd == pytest.approx(0.60 * 2 * 4600 / 3600)
    assert job.upstream.cost_usd == pytest.approx(20 * 0.15 + 3.6 * 0.60)
    assert job.cheapest() is g6


def test_unknown_throughput_or_price_is_reported_not_guessed() -> None:
    job = estimate_job(1000, 1000, [
        InstanceOption("p5.48xlarge", 98.0, None),
        InstanceOption("g6e.xlarge", None, Throughput(800.0)),
    ])
    no_throughput, no_price = job.options
    assert (no_throughput.hours, no_throughput.cost_usd) == (None, None)
    assert "throughput unknown" in no_throughput.notes[0]
    assert no_price.hours is not None and no_price.cost_usd is None
    assert "price unknown" in no_price.notes
    assert "prefill time not counted" in " ".join(no_price.notes)
    assert job.cheapest() is None


def test_measured_throughput_comes_from_token_counters() -> None:
    rate = Throughput.measured(12_000, 60.0, input_tokens=120_000)
    assert (rate.output_tokens_per_s, rate.input_tokens_per_s, rate.source) == (
        200.0, 2000.0, "measured")
    with pytest.raises(ValueError):
        Throughput.measured(0, 60.0)
