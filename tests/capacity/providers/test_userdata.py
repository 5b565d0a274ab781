"""The boot script: SPEC variables, IMDSv2, no secrets, and arguments that cannot inject shell."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from control_plane.providers.userdata import BootSpec, engine_command, render


def spec(**overrides) -> BootSpec:
    values = {"instance_id": "inst_0123456789abcdef", "control_plane_url": "http://10.0.0.5:8003",
              "model_id": "Qwen/Qwen2.5-14B-Instruct-AWQ", "engine": "vllm",
              "agent_package": "flotilla==0.1.0"}
    values.update(overrides)
    return BootSpec(**values)


def section(script: str, start: str, end: str) -> str:
    match = re.search(re.escape(start) + r"\n(.*?)\n" + re.escape(end), script, re.S)
    assert match, start
    return match.group(1)


def test_worker_env_carries_the_spec_variables() -> None:
    script = render(spec(tensor_parallel_size=2, gpu_memory_utilization=0.85))
    env = section(script, "<<'FLOTILLA_ENV'", "FLOTILLA_ENV")
    values = dict(line.split("=", 1) for line in env.splitlines())
    assert values == {
        "CONTROL_PLANE_URL": "http://10.0.0.5:8003", "MODEL_ID": "Qwen/Qwen2.5-14B-Instruct-AWQ",
        "INSTANCE_ID": "inst_0123456789abcdef", "ENGINE": "vllm",
        "ENGINE_URL": "http://127.0.0.1:8000",
        "WORKER_AUTH_TOKEN_FILE": "/var/lib/flotilla/worker-token", "DRAIN_TIMEOUT_S": "120",
        "LOG_FORMAT": "json",
        "TENSOR_PARALLEL_SIZE": "2", "GPU_MEMORY_UTILIZATION": "0.85"}
    imds = section(script, "<<FLOTILLA_IMDS", "FLOTILLA_IMDS")
    assert "ADVERTISE_URL=http://$PRIVATE_IP:8000" in imds
    assert "AGENT_URL=http://$PRIVATE_IP:8080" in imds
    assert "PROVIDER_INSTANCE_ID=$PROVIDER_INSTANCE_ID" in imds
    assert 'PRIVATE_IP=$(imds local-ipv4)' in script
    assert '-X PUT "$IMDS/latest/api/token"' in script  # IMDSv2 session token first


def test_tei_listens_on_8001_and_gets_its_own_image() -> None:
    script = render(spec(engine="tei", model_id="intfloat/multilingual-e5-large"))
    assert "ENGINE_URL=http://127.0.0.1:8001" in script
    assert "ADVERTISE_URL=http://$PRIVATE_IP:8001" in script
    assert "ghcr.io/huggingface/text-embeddings-inference:1.5" in script
    assert "--model-id intfloat/multilingual-e5-large" in script


def test_hf_token_comes_from_ssm_at_boot_not_from_user_data() -> None:
    script = render(spec(hf_token_parameter="/flotilla/hf-token"))
    assert "aws ssm get-parameter --with-decryption --name /flotilla/hf-token" in script
    assert "hf_" not in script.lower().replace("hf_token", "")


def test_script_is_valid_bash_and_within_the_user_data_limit() -> None:
    script = render(spec(engine_args=("--max-model-len", "8192")))
    subprocess.run(["bash", "-n"], input=script.encode(), check=True)
    assert len(script.encode()) < 16 * 1024


@pytest.mark.parametrize("value", ["a\nb", "x; rm -rf /", "$(id)", "a b"])
def test_unsafe_values_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        spec(model_id=value)
    with pytest.raises(ValueError):
        spec(control_plane_url=value)


def test_engine_arguments_reach_docker_exactly_as_given(tmp_path: Path) -> None:
    """Run the generated engine.sh with a fake `docker` that prints its argv: quoting holds."""
    tricky = ("--chat-template", "{{ 'it''s' }} $HOME `id` %h", "--served-model-name", "a;b")
    script = render(spec(engine_args=tricky))
    engine_sh = section(script, "<<'FLOTILLA_ENGINE'", "FLOTILLA_ENGINE")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "docker"
    fake.write_text('#!/bin/bash\nfor a in "$@"; do printf "%s\\0" "$a"; done\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "engine.sh").write_text(engine_sh + "\n")
    out = subprocess.run(
        ["bash", str(tmp_path / "engine.sh")], capture_output=True, check=True,
        env={"PATH": f"{bindir}:{os.environ['PATH']}", "CACHE_DIR": "/nvme/cache"})
    argv = out.stdout.decode().split("\0")[:-1]
    expected = [a.replace("<cache-dir>", "/nvme/cache") for a in engine_command(spec(
        engine_args=tricky))][1:]
    assert argv == expected
    assert argv[-4:] == list(tricky)
    assert "/nvme/cache:/root/.cache/huggingface" in argv
