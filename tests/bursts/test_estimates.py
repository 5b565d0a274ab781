"""Job estimates: configured throughput and prices in, time and cost per instance type out;
unknown inputs stay unknown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from control_plane.estimates import EstimateRequest, EstimateTable, build_estimate
from fleet.settings import SettingsError
from fleet.validation import ValidationError, parse

TABLE = {
    "throughput": [
        {"instance_type": "g6.2xlarge", "model_id": "qwen", "output_tokens_per_s": 500,
         "input_tokens_per_s": 5000, "startup_s": 360, "note": "bench"},
        {"instance_type": "g5.2xlarge", "output_tokens_per_s": 250},
    ],
    "prices": {"g6.2xlarge": 0.8, "g5.2xlarge": 0.5},
    "upstream": {"name": "openai:gpt-4o-mini", "input_usd_per_mtok": 0.15,
                 "output_usd_per_mtok": 0.6},
}


def table_prices(table: EstimateTable) -> Any:
    def lookup(instance_type: str) -> tuple[float, str] | None:
        price = table.prices.get(instance_type)
        return None if price is None else (price, "estimate_table")
    return lookup


def estimate(body: dict[str, Any], types: list[str], model_id: str | None = "qwen"
             ) -> dict[str, Any]:
    table = parse(EstimateTable, TABLE)
    return build_estimate(parse(EstimateRequest, body), table, model_id=model_id,
                          instance_types=types, prices=[table_prices(table)])


def test_time_and_cost_follow_the_configured_throughput_and_price() -> None:
    result = estimate({"tokens": 18_000_000, "output_tokens": 1_800_000}, ["g6.2xlarge"])
    (option,) = result["options"]
    # 360 s startup + 1.8M / 500 + 18M / 5000 = 360 + 3600 + 3600 s = 2.1 h at $0.8
    assert option["seconds"] == pytest.approx(7560.0)
    assert option["cost_usd"] == pytest.approx(0.8 * 2.1)
    assert option["price_source"] == "estimate_table"
    assert option["throughput"]["source"] == "configured"
    upstream = result["upstream"]
    assert upstream["cost_usd"] == pytest.approx(18 * 0.15 + 1.8 * 0.6)
    assert result["cheapest"] == "g6.2xlarge"


def test_unknown_throughput_is_reported_unknown_not_guessed() -> None:
    result = estimate({"tokens": 1000, "output_tokens": 1000}, ["p5.48xlarge"])
    (option,) = result["options"]
    assert option["throughput"] is None
    assert option["hours"] is None and option["cost_usd"] is None
    assert any("throughput unknown" in n for n in option["notes"])
    assert result["cheapest"] == "openai:gpt-4o-mini"


def test_a_generic_entry_says_it_was_not_measured_for_this_model() -> None:
    result = estimate({"tokens": 0, "output_tokens": 250_000}, ["g5.2xlarge"])
    (option,) = result["options"]
    assert option["seconds"] == pytest.approx(1000.0)
    assert "not measured for qwen" in option["throughput"]["note"]
    assert any("prefill" in n for n in option["notes"]) is False  # no input tokens


def test_the_request_price_overrides_the_table_and_takes_input_output_pairs() -> None:
    flat = estimate({"tokens": 1_000_000, "upstream_price_per_mtok": 2.0}, [])
    assert flat["upstream"]["cost_usd"] == pytest.approx(2.0)
    pair = estimate({"tokens": 1_000_000, "output_tokens": 1_000_000,
                     "upstream_price_per_mtok": {"input": 1.0, "output": 4.0},
                     "upstream": "claude"}, [])
    assert pair["upstream"]["cost_usd"] == pytest.approx(5.0)
    assert pair["upstream"]["name"] == "claude"
    assert any("no instance types" in n for n in pair["notes"])


@pytest.mark.parametrize("body, param", [
    ({}, "tokens"),
    ({"tokens": -1}, "tokens"),
    ({"tokens": "10"}, "tokens"),
    ({"tokens": 10, "replicas": 0}, "replicas"),
    ({"tokens": 10, "upstream_price_per_mtok": -1}, "upstream_price_per_mtok"),
    ({"tokens": 10, "toknes": 1}, "toknes"),
])
def test_bad_estimate_bodies_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(EstimateRequest, body)
    assert caught.value.param == param


def test_the_table_file_is_checked_at_start(tmp_path: Path) -> None:
    good = tmp_path / "table.json"
    good.write_bytes(orjson.dumps(TABLE))
    assert EstimateTable.load(str(good)).entry("g6.2xlarge", "qwen").startup_s == 360
    assert EstimateTable.load(None) == EstimateTable()
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps({"throughput": [{"instance_type": "x",
                                                  "output_tokens_per_s": 0}]}))
    with pytest.raises(SettingsError, match="CONTROL_PLANE_ESTIMATE_TABLE.*output_tokens_per_s"):
        EstimateTable.load(str(bad))
    with pytest.raises(SettingsError, match="cannot read"):
        EstimateTable.load(str(tmp_path / "missing.json"))


def test_a_measurement_of_the_pool_fills_in_where_nothing_is_configured() -> None:
    from control_plane.throughput import Measurement

    table = parse(EstimateTable, TABLE)
    seen = Measurement(at=50.0, output_tokens_per_s=120.0, input_tokens_per_s=None,
                       concurrency=4.0, seconds=30.0)
    result = build_estimate(parse(EstimateRequest, {"tokens": 0, "output_tokens": 432_000}),
                            table, model_id="qwen", instance_types=["g6.2xlarge", "sim-gpu"],
                            prices=[table_prices(table)],
                            measured=lambda t: seen)
    configured, measured = result["options"]
    assert configured["throughput"]["source"] == "configured"  # the table wins where it has one
    assert measured["throughput"]["source"] == "measured"
    assert "4 concurrent requests" in measured["throughput"]["note"]
    assert measured["seconds"] == pytest.approx(3600.0)
    assert measured["cost_usd"] is None  # no price for sim-gpu: unknown, not zero
