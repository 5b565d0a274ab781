"""The exposition text: vLLM-style `_total` families, TEI-style bare counters, histograms."""

from __future__ import annotations

from simulator.metrics import Registry


def test_counter_families_carry_their_sample_suffix_in_help_and_type() -> None:
    registry = Registry()
    registry.counter("vllm:request_success", "Done.", ("model_name",)).labels("m").inc(2)
    registry.counter("te_request_count", "Count.", ("method",), sample_suffix="").labels(
        "single").inc()
    text = registry.render().decode()
    assert "# TYPE vllm:request_success_total counter\n" in text
    assert 'vllm:request_success_total{model_name="m"} 2.0\n' in text
    assert "# TYPE te_request_count counter\n" in text
    assert 'te_request_count{method="single"} 1.0\n' in text


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    registry = Registry()
    child = registry.histogram("h_seconds", "H.", (0.1, 1.0), ("a",)).labels("x")
    for value in (0.05, 0.1, 0.5, 7.0):
        child.observe(value)
    text = registry.render().decode()
    assert 'h_seconds_bucket{a="x",le="0.1"} 2.0' in text
    assert 'h_seconds_bucket{a="x",le="1.0"} 3.0' in text
    assert 'h_seconds_bucket{a="x",le="+Inf"} 4.0' in text
    assert 'h_seconds_sum{a="x"} 7.65' in text
    assert 'h_seconds_count{a="x"} 4.0' in text


def test_gauges_read_live_values_and_label_values_are_escaped() -> None:
    registry = Registry()
    state = {"running": 3}
    registry.gauge("g", "G.", ("model_name",)).labels('a"b\\c').set_function(
        lambda: state["running"])
    state["running"] = 5
    assert 'g{model_name="a\\"b\\\\c"} 5.0' in registry.render().decode()
