"""Wire-schema validation turns bad input into errors that name the field."""

from __future__ import annotations

import pytest

from fleet.catalog import Pool, PoolTarget, Route, UpstreamTarget
from fleet.schemas import Heartbeat, RegisterRequest, WorkerRecord, is_expired, readiness
from fleet.validation import ValidationError, parse

GOOD_REGISTER = {"instance_id": "i-0abc", "model_id": "Qwen/Qwen2.5-14B-Instruct-AWQ",
                 "url": "http://10.0.0.5:8000", "agent_url": "http://10.0.0.5:8080"}


def test_register_request_parses_with_defaults() -> None:
    request = parse(RegisterRequest, GOOD_REGISTER)
    assert request.engine == "vllm"
    assert request.worker_id is None


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"instance_id": None}, "instance_id"),
        ({"instance_id": 12}, "instance_id"),
        ({"instance_id": "bad id with spaces"}, "instance_id"),
        ({"url": "ftp://10.0.0.5/"}, "url"),
        ({"url": "http://user:pw@10.0.0.5:8000"}, "url"),
        ({"agent_url": "not a url"}, "agent_url"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"engine": "VLLM!"}, "engine"),
        ({"surprise": 1}, "surprise"),
        ({"model_id": "x" * 300}, "model_id"),
    ],
)
def test_register_request_rejects_bad_fields_by_name(change: dict, param: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse(RegisterRequest, {**GOOD_REGISTER, **change})
    assert err.value.param == param


def test_missing_required_field_is_named() -> None:
    body = dict(GOOD_REGISTER)
    del body["model_id"]
    with pytest.raises(ValidationError, match="model_id is required"):
        parse(RegisterRequest, body)


def test_body_must_be_an_object() -> None:
    with pytest.raises(ValidationError, match="must be a JSON object"):
        parse(RegisterRequest, [1, 2])


def test_heartbeat_accepts_ints_for_floats_and_rejects_bools_for_ints() -> None:
    beat = parse(Heartbeat, {"status": "ready", "model_id": "m", "queue_depth": 3,
                             "gpu_util": 1})
    assert beat.gpu_util == 1.0 and isinstance(beat.gpu_util, float)
    with pytest.raises(ValidationError) as err:
        parse(Heartbeat, {"status": "ready", "model_id": "m", "queue_depth": True})
    assert err.value.param == "queue_depth"


def test_heartbeat_status_must_be_a_known_state() -> None:
    with pytest.raises(ValidationError, match="status must be one of"):
        parse(Heartbeat, {"status": "happy", "model_id": "m"})


def test_heartbeat_from_a_newer_agent_may_carry_unknown_fields() -> None:
    beat = parse(Heartbeat, {"status": "ready", "model_id": "m", "new_signal": 1},
                 allow_unknown=True)
    assert beat.status == "ready"


def test_nan_is_not_a_number_we_accept() -> None:
    with pytest.raises(ValidationError, match="finite"):
        parse(Heartbeat, {"status": "ready", "model_id": "m", "ttft_p95_ms": float("nan")})


def test_route_targets_are_a_tagged_union() -> None:
    route = parse(Route, {"targets": [{"pool": "qwen"}, {
        "upstream": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY",
        "model": "gpt-4o-mini"}]})
    assert route.targets == [PoolTarget("qwen"), UpstreamTarget(
        "https://api.openai.com/v1", "OPENAI_API_KEY", "gpt-4o-mini")]
    with pytest.raises(ValidationError, match="exactly one of"):
        parse(Route, {"targets": [{"pool": "a", "upstream": "https://x/v1"}]})
    with pytest.raises(ValidationError) as err:
        parse(Route, {"targets": [{"pool": "qwen"}, {"upstream": "https://x/v1", "bogus": 1}]})
    assert err.value.param == "targets[1].bogus"
    with pytest.raises(ValidationError, match="too short"):
        parse(Route, {"targets": []})


def test_pool_cross_field_rules_name_the_values() -> None:
    with pytest.raises(ValidationError, match=r"min_replicas \(3\) must be <= max_replicas \(1\)"):
        parse(Pool, {"model_id": "m", "min_replicas": 3, "max_replicas": 1})
    with pytest.raises(ValidationError, match="instance_types is required"):
        parse(Pool, {"model_id": "m", "provider": "aws"})
    assert parse(Pool, {"model_id": "m"}).provider == "local"


def _record(**overrides: object) -> WorkerRecord:
    values: dict[str, object] = dict(
        worker_id="w", instance_id="i", model_id="m", engine="vllm", url="http://127.0.0.1:1",
        agent_url="http://127.0.0.1:2", registered_at=0.0, last_heartbeat=100.0,
        status="ready", probe_passed_at=100.0)
    values.update(overrides)
    return WorkerRecord(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "now", "ready", "reason"),
    [
        ({}, 105.0, True, "ready"),
        ({}, 131.0, False, "heartbeat missed"),
        ({"status": "starting"}, 105.0, False, "agent reports starting"),
        ({"status": "draining"}, 105.0, False, "draining"),
        ({"drain_requested_at": 101.0}, 105.0, False, "draining"),
        ({"probe_passed_at": None}, 105.0, False, "readiness probe has not passed yet"),
        ({"probe_failures": 1, "probe_error": "503"}, 105.0, False,
         "readiness probe failing: 503"),
        ({"url_error": "not in WORKER_NETWORKS"}, 105.0, False,
         "advertised URL refused: not in WORKER_NETWORKS"),
    ],
)
def test_readiness_is_derived_from_facts(overrides: dict, now: float, ready: bool,
                                         reason: str) -> None:
    assert readiness(_record(**overrides), now, heartbeat_interval_s=10) == (ready, reason)


def test_expiry_after_three_missed_heartbeats() -> None:
    record = _record()
    assert not is_expired(record, 130.0, heartbeat_interval_s=10)
    assert is_expired(record, 130.1, heartbeat_interval_s=10)
