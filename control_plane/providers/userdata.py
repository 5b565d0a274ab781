"""The boot script of a GPU worker VM (EC2 user-data): start the engine and the worker agent.

What it does, in order:

    1. IMDSv2 token (PUT /latest/api/token), then read the instance's own facts from metadata:
       instance id (PROVIDER_INSTANCE_ID) and private IPv4 (ADVERTISE_URL / AGENT_URL host).
       Only IMDSv2 is used: the instance is launched with HttpTokens=required.
    2. Write /etc/flotilla/worker.env (SPEC §2 variables) and the engine's command line.
    3. Start the engine as a systemd unit running the official container image with the GPU
       (`vllm/vllm-openai` on :8000, or TEI on :8001), model cache on the NVMe instance store
       when the DLAMI mounted one (/opt/dlami/nvme), else on the root volume.
    4. Install the agent (`pip install <agent_package>` into /opt/flotilla/venv) and start it as a
       systemd unit: it registers with the control plane, waits for the engine, heartbeats, and
       drains on a Spot notice or on SIGTERM (systemd sends SIGTERM at shutdown; the unit gives it
       `drain_timeout_s` to finish).

No secret is written here: user-data is readable by anything on the instance and by anyone with
ec2:DescribeInstanceAttribute. The agent enrolls with the bootstrap token the control plane hands
out at first registration and keeps it in WORKER_AUTH_TOKEN_FILE (mode 0600). A Hugging Face token
for gated models is read at boot from an SSM SecureString parameter through the instance profile
(`hf_token_parameter`), never passed in user-data.

Every value interpolated into the script is either quoted with `shlex.quote` or checked against a
conservative character set, so a model id or engine flag cannot inject shell.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from control_plane.providers.base import check_safe_value

USER_DATA_LIMIT = 16 * 1024  # EC2's limit on raw user-data
VLLM_PORT = 8000
TEI_PORT = 8001
AGENT_PORT = 8080
CACHE_MOUNT = "<cache-dir>"  # stands for $CACHE_DIR in `engine_command`


@dataclass(frozen=True, slots=True)
class BootSpec:
    """Everything the boot script needs for one instance."""

    instance_id: str
    control_plane_url: str
    model_id: str
    engine: str  # vllm | tei
    agent_package: str  # a pip requirement the instance can install (wheel URL, pinned name)
    engine_args: tuple[str, ...] = ()
    tensor_parallel_size: int | None = None
    gpu_memory_utilization: float | None = None
    vllm_image: str = "vllm/vllm-openai:latest"
    tei_image: str = "ghcr.io/huggingface/text-embeddings-inference:1.5"
    hf_token_parameter: str | None = None  # SSM SecureString name holding HF_TOKEN
    drain_timeout_s: int = 120  # the agent's DRAIN_TIMEOUT_S; systemd waits 30 s more

    def __post_init__(self) -> None:
        if self.engine not in ("vllm", "tei"):
            raise ValueError(f"engine must be vllm or tei, got {self.engine!r}")
        for name in ("instance_id", "control_plane_url", "model_id", "vllm_image", "tei_image"):
            check_safe_value(name, getattr(self, name))
        if self.hf_token_parameter is not None:
            check_safe_value("hf_token_parameter", self.hf_token_parameter)
        if not self.agent_package.strip() or "\n" in self.agent_package:
            raise ValueError("agent_package must be one pip requirement on one line")

    @property
    def engine_port(self) -> int:
        return VLLM_PORT if self.engine == "vllm" else TEI_PORT


def engine_command(spec: BootSpec) -> list[str]:
    """The `docker run` command line of the engine (quoted into the unit by `render`)."""
    common = ["docker", "run", "--rm", "--name", "flotilla-engine", "--gpus", "all",
              "--ipc=host", "--env-file", "/etc/flotilla/engine.env"]
    if spec.engine == "vllm":
        args = [*common, "-p", f"{VLLM_PORT}:8000", "-v", CACHE_MOUNT + ":/root/.cache/huggingface",
                spec.vllm_image, "--model", spec.model_id, "--port", "8000"]
        if spec.tensor_parallel_size:
            args += ["--tensor-parallel-size", str(spec.tensor_parallel_size)]
        if spec.gpu_memory_utilization is not None:
            args += ["--gpu-memory-utilization", f"{spec.gpu_memory_utilization:g}"]
    else:
        args = [*common, "-p", f"{TEI_PORT}:80", "-v", CACHE_MOUNT + ":/data",
                spec.tei_image, "--model-id", spec.model_id]
    return [*args, *spec.engine_args]


def worker_env(spec: BootSpec) -> dict[str, str]:
    """SPEC §2 variables known before boot; the IMDS-derived ones are appended at boot."""
    env = {
        "CONTROL_PLANE_URL": spec.control_plane_url,
        "MODEL_ID": spec.model_id,
        "INSTANCE_ID": spec.instance_id,
        "ENGINE": spec.engine,
        "ENGINE_URL": f"http://127.0.0.1:{spec.engine_port}",
        "WORKER_AUTH_TOKEN_FILE": "/var/lib/flotilla/worker-token",
        "DRAIN_TIMEOUT_S": str(spec.drain_timeout_s),
        "LOG_FORMAT": "json",
    }
    if spec.tensor_parallel_size:
        env["TENSOR_PARALLEL_SIZE"] = str(spec.tensor_parallel_size)
    if spec.gpu_memory_utilization is not None:
        env["GPU_MEMORY_UTILIZATION"] = f"{spec.gpu_memory_utilization:g}"
    return env


def engine_script(spec: BootSpec) -> str:
    """/etc/flotilla/engine.sh: the engine command, every argument quoted for bash."""
    parts = []
    for arg in engine_command(spec):
        if arg.startswith(CACHE_MOUNT):  # the cache directory is chosen at boot
            parts.append('"$CACHE_DIR"' + shlex.quote(arg[len(CACHE_MOUNT):]))
        else:
            parts.append(shlex.quote(arg))
    return "#!/bin/bash\nexec " + " ".join(parts) + "\n"


def render(spec: BootSpec) -> str:
    """The user-data script (bash, run once by cloud-init as root)."""
    env_lines = "\n".join(f"{k}={v}" for k, v in worker_env(spec).items())
    hf_token = ""
    if spec.hf_token_parameter:
        hf_token = (
            "HF_TOKEN=$(aws ssm get-parameter --with-decryption --name "
            f"{shlex.quote(spec.hf_token_parameter)} --query Parameter.Value --output text)\n"
            'printf "HF_TOKEN=%s\\nHUGGING_FACE_HUB_TOKEN=%s\\n" "$HF_TOKEN" "$HF_TOKEN" '
            ">> /etc/flotilla/engine.env\nunset HF_TOKEN\n")
    script = f"""#!/bin/bash
# Flotilla worker bootstrap for instance {spec.instance_id} (generated by the control plane).
set -euo pipefail
exec >>/var/log/flotilla-bootstrap.log 2>&1
umask 077
IMDS=http://169.254.169.254
TOKEN=$(curl -sSf --retry 10 --retry-connrefused -X PUT "$IMDS/latest/api/token" \\
  -H "X-aws-ec2-metadata-token-ttl-seconds: 21600")
imds() {{ curl -sSf --retry 5 -H "X-aws-ec2-metadata-token: $TOKEN" "$IMDS/latest/meta-data/$1"; }}
PRIVATE_IP=$(imds local-ipv4)
PROVIDER_INSTANCE_ID=$(imds instance-id)

mkdir -p /etc/flotilla /var/lib/flotilla
CACHE_DIR=/var/lib/flotilla/cache
if [ -d /opt/dlami/nvme ]; then CACHE_DIR=/opt/dlami/nvme/flotilla-cache; fi
mkdir -p "$CACHE_DIR"

cat >/etc/flotilla/worker.env <<'FLOTILLA_ENV'
{env_lines}
FLOTILLA_ENV
cat >>/etc/flotilla/worker.env <<FLOTILLA_IMDS
PROVIDER_INSTANCE_ID=$PROVIDER_INSTANCE_ID
ADVERTISE_URL=http://$PRIVATE_IP:{spec.engine_port}
AGENT_URL=http://$PRIVATE_IP:{AGENT_PORT}
CACHE_DIR=$CACHE_DIR
FLOTILLA_IMDS
: >/etc/flotilla/engine.env
{hf_token}
cat >/etc/flotilla/engine.sh <<'FLOTILLA_ENGINE'
{engine_script(spec)}FLOTILLA_ENGINE
chmod 0700 /etc/flotilla/engine.sh

cat >/etc/systemd/system/flotilla-engine.service <<'FLOTILLA_UNIT'
[Unit]
Description=Flotilla inference engine ({spec.engine})
After=docker.service
Requires=docker.service
[Service]
EnvironmentFile=/etc/flotilla/worker.env
ExecStartPre=-/usr/bin/docker rm -f flotilla-engine
ExecStart=/bin/bash /etc/flotilla/engine.sh
ExecStop=/usr/bin/docker stop -t 30 flotilla-engine
Restart=always
RestartSec=5
[Install]
WantedBy=multi-user.target
FLOTILLA_UNIT

cat >/etc/systemd/system/flotilla-agent.service <<'FLOTILLA_UNIT'
[Unit]
Description=Flotilla worker agent
After=network-online.target flotilla-engine.service
Wants=network-online.target
[Service]
EnvironmentFile=/etc/flotilla/worker.env
ExecStart=/opt/flotilla/venv/bin/flotilla agent --host 0.0.0.0 --port {AGENT_PORT}
KillSignal=SIGTERM
TimeoutStopSec={spec.drain_timeout_s + 30}
Restart=on-failure
RestartSec=5
[Install]
WantedBy=multi-user.target
FLOTILLA_UNIT

systemctl daemon-reload
systemctl enable --now flotilla-engine.service
python3 -m venv /opt/flotilla/venv || {{
  apt-get update -q && apt-get install -y -q python3-venv && python3 -m venv /opt/flotilla/venv; }}
/opt/flotilla/venv/bin/pip install --quiet {shlex.quote(spec.agent_package)}
systemctl enable --now flotilla-agent.service
echo "flotilla bootstrap done"
"""
    if len(script.encode()) > USER_DATA_LIMIT:
        raise ValueError(f"user-data is {len(script.encode())} bytes, over EC2's 16 KiB limit")
    return script
