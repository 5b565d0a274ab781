"""docker-compose.yml: valid against the Compose specification's JSON schema, and every Flotilla
service in it starts with a command line and environment its own settings loader accepts.

There is no Docker engine here: the schema comes with check-jsonschema (its vendored copy of the
compose-spec schema, `--builtin-schema vendor.compose-spec`, from
https://github.com/compose-spec/compose-spec/blob/main/schema/compose-spec.json), so the check
works offline. The settings check catches what a schema cannot: a misspelt flag or variable, a
value out of range, a worker advertising an address the control plane would refuse.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import subprocess
import sys
from typing import Any
from urllib.parse import urlsplit

import pytest

from control_plane.settings import DEFAULT_WORKER_NETWORKS, ControlPlaneSettings
from fleet.settings import load_settings
from flotilla.cli import COMMANDS
from router.settings import RouterSettings
from simulator.settings import SimulatorSettings
from tests.deploy.compose import COMPOSE_FILE, environment, load_compose
from tests.support.processes import REPO_ROOT
from worker_agent.settings import AgentSettings

SETTINGS = {"router": RouterSettings, "control-plane": ControlPlaneSettings,
            "agent": AgentSettings, "sim": SimulatorSettings}
# Read by the router at call time for routes' upstream targets (`api_key_env`), not settings.
PASSTHROUGH = {"router": {"OPENAI_API_KEY"}}


def _flotilla_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items()
            if str(svc.get("image", "")).startswith("flotilla")}


def _env_names(cls: type) -> set[str]:
    names = set()
    for field in dataclasses.fields(cls):
        meta = field.metadata.get("option")
        if meta is not None and meta.env:
            names.add(meta.env)
    return names


def test_compose_file_matches_the_compose_spec_schema() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE_FILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_services_profiles_and_persistence() -> None:
    compose = load_compose()
    services = compose["services"]
    default = {n for n, s in services.items() if not s.get("profiles")}
    assert default == {"redis", "control-plane", "router", "prometheus"}
    assert {n for n, s in services.items() if "local" in s.get("profiles", [])} == {
        "sim-1", "agent-1", "sim-2", "agent-2"}
    assert {n for n, s in services.items() if "gpu" in s.get("profiles", [])} == {
        "vllm", "agent-gpu"}
    redis = services["redis"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(str(v).endswith(":/data") for v in redis["volumes"])
    prometheus = services["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert services["vllm"]["image"].startswith("vllm/vllm-openai")


@pytest.mark.parametrize("name", sorted(_flotilla_services(load_compose())))
def test_flotilla_service_settings_load(name: str) -> None:
    service = _flotilla_services(load_compose())[name]
    command = [str(part) for part in service["command"]]
    assert command[0] in COMMANDS, f"{name}: `flotilla {command[0]}` is not a command"
    cls = SETTINGS[command[0]]
    env = environment(service)
    unknown = set(env) - _env_names(cls) - PASSTHROUGH.get(command[0], set())
    assert unknown == set(), f"{name}: variables {command[0]} does not read: {unknown}"
    env = {k: v for k, v in env.items() if k not in PASSTHROUGH.get(command[0], set())}
    if "ADMIN_TOKEN" in env:
        env["ADMIN_TOKEN"] = "x" * 32
    try:
        load_settings(cls, command[1:], env)
    except SystemExit as exc:  # argparse: an unknown flag or a bad value
        pytest.fail(f"{name}: {command} rejected by argparse ({exc})")


def test_local_workers_advertise_addresses_the_control_plane_accepts() -> None:
    compose = load_compose()
    services = compose["services"]
    subnet = ipaddress.ip_network(compose["networks"]["fleet"]["ipam"]["config"][0]["subnet"])
    cp_env = environment(services["control-plane"])
    allowed = [ipaddress.ip_network(n) for n in
               (cp_env.get("WORKER_NETWORKS") or ",".join(DEFAULT_WORKER_NETWORKS)).split(",")]
    agents = {n: s for n, s in services.items() if n.startswith("agent-") and n != "agent-gpu"}
    assert agents
    instance_ids = set()
    for name, agent in agents.items():
        engine = agent["network_mode"].removeprefix("service:")
        address = ipaddress.ip_address(services[engine]["networks"]["fleet"]["ipv4_address"])
        env = environment(agent)
        advertised = urlsplit(env["ADVERTISE_URL"])
        # The agent shares its engine's network namespace: it advertises that address.
        assert ipaddress.ip_address(advertised.hostname or "") == address, name
        assert address in subnet and any(address in net for net in allowed), name
        assert env["MODEL_ID"] in services[engine]["command"]
        instance_ids.add(env["INSTANCE_ID"])
    assert len(instance_ids) == len(agents)


def test_example_env_file_names_every_variable_compose_reads() -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    example = (REPO_ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", example, flags=re.M))
    assert used - listed == set()
