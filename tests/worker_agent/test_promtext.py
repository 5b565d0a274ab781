"""The lean exposition parser agrees with prometheus_client's on real pages, for what we read."""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.engine_pages import tei_page, vllm_page
from worker_agent.engines.tei import TeiAdapter
from worker_agent.engines.vllm import VllmAdapter
from worker_agent.promtext import ExpositionError, parse_samples, total


def oracle(text: str, wanted: frozenset[str]) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            # prometheus_client renames counter samples to `<name>_total` even when the page
            # (TEI's) says `te_request_count`: map them back to the name on the wire.
            if name not in wanted and name.endswith("_total") and name[:-6] in wanted:
                name = name[:-6]
            if name in wanted:
                out.setdefault(name, []).append((dict(sample.labels), sample.value))
    return out


def lean(text: str, wanted: frozenset[str]) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {name: [(s.labels, s.value) for s in samples]
            for name, samples in parse_samples(text, wanted).items()}


@pytest.mark.parametrize("page, wanted", [
    (vllm_page(engines=2, running=3, waiting=2, ttft=[0.02, 0.3, 4.0], e2e=[1.0, 12.0],
               success={"stop": 4, "length": 1}, deprecated_kv_cache_usage=0.5),
     VllmAdapter.metric_names),
    (tei_page(queue=3, requests=10, successes=6, failures={"overloaded": 1},
              durations=[0.01, 0.2]), TeiAdapter.metric_names),
])
def test_lean_parser_reads_the_same_samples_as_prometheus_client(page: str, wanted) -> None:
    assert lean(page, wanted) == oracle(page, wanted)
    assert lean(page, wanted)  # the page does carry the series


def test_label_values_with_escapes_spaces_and_braces_are_decoded() -> None:
    text = ('m{a="x \\"quoted\\" y",b="back\\\\slash",c="new\\nline",d="{} ,="} 7 1700000000\n'
            'm{} 2\n'
            'm 3\n')
    samples = parse_samples(text, {"m"})["m"]
    assert samples[0].labels == {"a": 'x "quoted" y', "b": "back\\slash", "c": "new\nline",
                                 "d": "{} ,="}
    assert [s.value for s in samples] == [7.0, 2.0, 3.0]
    assert total({"m": samples}, "m") == 12.0


def test_special_values_parse_and_nan_is_left_out_of_totals() -> None:
    text = "g NaN\ng +Inf\nh -Inf\nk 1e3\n"
    samples = parse_samples(text, {"g", "h", "k"})
    assert math.isnan(samples["g"][0].value) and samples["g"][1].value == math.inf
    assert samples["h"][0].value == -math.inf
    assert total(samples, "k") == 1000.0
    assert total(parse_samples("g NaN\n", {"g"}), "g") is None


def test_unwanted_and_comment_lines_are_skipped_even_when_odd() -> None:
    text = "# HELP x a {weird} help\n\nother{broken 1\nx 5\n"
    assert total(parse_samples(text, {"x"}), "x") == 5.0


@pytest.mark.parametrize("line", ['x{a="1"', 'x{a=1} 2', "x", 'x{a="1"}', "x abc"])
def test_malformed_wanted_lines_raise_an_exposition_error(line: str) -> None:
    with pytest.raises(ExpositionError):
        parse_samples(line + "\n", {"x"})
