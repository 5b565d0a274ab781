"""Agent settings: SPEC names, derived URLs, errors that name the variable."""

from __future__ import annotations

import pytest

from fleet.settings import SettingsError, describe, load_settings
from worker_agent.agent import engine_argv, register_request
from worker_agent.engines import make_adapter
from worker_agent.settings import AgentSettings

BASE = {"MODEL_ID": "org/m", "INSTANCE_ID": "inst-1"}


def load(argv: list[str] | None = None, **env: str) -> AgentSettings:
    return load_settings(AgentSettings, argv or [], {**BASE, **env})


def test_defaults_follow_the_spec() -> None:
    s = load()
    assert s.engine == "vllm" and s.engine_url == "http://127.0.0.1:8000"
    assert s.heartbeat_interval_s == 10.0 and s.port == 8080 and s.host == "0.0.0.0"
    assert s.imds_url == "http://169.254.169.254" and s.imds_enabled
    assert s.advertise_url == s.engine_url
    assert s.agent_url == "http://127.0.0.1:8080"
    assert not s.supervised


def test_agent_url_defaults_to_the_advertised_host_with_the_agent_port() -> None:
    s = load(["--port", "9090"], ADVERTISE_URL="http://10.0.3.7:8000")
    assert s.agent_url == "http://10.0.3.7:9090"
    explicit = load(ADVERTISE_URL="http://10.0.3.7:8000", AGENT_URL="https://agent.internal:1")
    assert explicit.agent_url == "https://agent.internal:1"


def test_spec_environment_names_are_read() -> None:
    s = load(WORKER_ID="w-1", PROVIDER_INSTANCE_ID="i-abc", CONTROL_PLANE_URL="http://cp:8003",
             WORKER_AUTH_TOKEN="wt-flt-secret", WORKER_AUTH_TOKEN_FILE="/tmp/t",
             TENSOR_PARALLEL_SIZE="2", GPU_MEMORY_UTILIZATION="0.9", ENGINE="tei",
             HEARTBEAT_INTERVAL_S="3", IMDS_URL="", LOG_LEVEL="debug", LOG_FORMAT="json")
    assert (s.worker_id, s.provider_instance_id, s.control_plane_url) == (
        "w-1", "i-abc", "http://cp:8003")
    assert s.worker_auth_token == "wt-flt-secret" and s.worker_auth_token_file == "/tmp/t"
    assert (s.tensor_parallel_size, s.gpu_memory_utilization, s.engine) == (2, 0.9, "tei")
    assert s.heartbeat_interval_s == 3.0 and s.imds_url is None and not s.imds_enabled
    assert (s.log_level, s.log_format) == ("debug", "json")


def test_the_token_is_masked_in_logs_and_repr() -> None:
    s = load(WORKER_AUTH_TOKEN="wt-flt-secret")
    assert "wt-flt-secret" not in repr(s)
    assert describe(s)["worker_auth_token"] == "***"


def test_flags_win_over_the_environment() -> None:
    assert load(["--engine-url", "http://127.0.0.1:7"],
                ENGINE_URL="http://127.0.0.1:9").engine_url == "http://127.0.0.1:7"


@pytest.mark.parametrize("env, named", [
    ({"ENGINE": "sglang-nope"}, "ENGINE"),
    ({"ENGINE_URL": "ftp://x"}, "ENGINE_URL"),
    ({"ADVERTISE_URL": "http://user:pw@h:1"}, "ADVERTISE_URL"),
    ({"CONTROL_PLANE_URL": "nope"}, "CONTROL_PLANE_URL"),
    ({"HEARTBEAT_INTERVAL_S": "0"}, "HEARTBEAT_INTERVAL_S"),
    ({"GPU_MEMORY_UTILIZATION": "1.5"}, "GPU_MEMORY_UTILIZATION"),
    ({"TENSOR_PARALLEL_SIZE": "two"}, "TENSOR_PARALLEL_SIZE"),
    ({"ENGINE_CMD": "vllm serve 'unclosed"}, "--engine-cmd"),
])
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load(**env)


def test_model_id_is_required() -> None:
    with pytest.raises(SettingsError, match="MODEL_ID is required"):
        load_settings(AgentSettings, [], {})


def test_ids_that_the_wire_schema_refuses_are_reported_at_start_with_their_variable() -> None:
    with pytest.raises(SettingsError, match="INSTANCE_ID"):
        register_request(load(INSTANCE_ID="has spaces"))
    request = register_request(load(WORKER_ID="w-1", TENSOR_PARALLEL_SIZE="4"))
    assert (request.instance_id, request.worker_id, request.tensor_parallel_size) == (
        "inst-1", "w-1", 4)
    assert request.url == "http://127.0.0.1:8000" and request.agent_url.endswith(":8080")


def test_supervised_engine_listens_where_the_router_will_call() -> None:
    s = load(["--supervise"], ENGINE_URL="http://127.0.0.1:8001",
             ADVERTISE_URL="http://10.0.0.5:8001", TENSOR_PARALLEL_SIZE="2")
    argv = engine_argv(s, make_adapter("vllm", s.engine_url, s.model_id, http=None))
    assert argv[:3] == ["vllm", "serve", "org/m"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0" and "--tensor-parallel-size" in argv
    local = load(["--supervise"], ENGINE_URL="http://127.0.0.1:8001")
    argv = engine_argv(local, make_adapter("vllm", local.engine_url, local.model_id, http=None))
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    custom = load(["--engine-cmd", "python -m simulator --port '8001'"])
    assert custom.supervised
    assert engine_argv(custom, make_adapter("vllm", "http://h:1", "m", http=None)) == [
        "python", "-m", "simulator", "--port", "8001"]
