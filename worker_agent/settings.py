"""The worker agent's settings: one frozen dataclass, read once from flags and the environment.

SPEC names (keep them): INSTANCE_ID, WORKER_ID, PROVIDER_INSTANCE_ID, CONTROL_PLANE_URL,
WORKER_AUTH_TOKEN, WORKER_AUTH_TOKEN_FILE, MODEL_ID, TENSOR_PARALLEL_SIZE, GPU_MEMORY_UTILIZATION,
ENGINE, ENGINE_URL, ADVERTISE_URL, AGENT_URL, HEARTBEAT_INTERVAL_S, IMDS_URL, LOG_LEVEL, LOG_FORMAT.
The rest are the agent's own knobs, with defaults fit for production; tests shorten the intervals.

Derived defaults (filled in `__post_init__`): ADVERTISE_URL defaults to ENGINE_URL; AGENT_URL to
ADVERTISE_URL's scheme and host with the agent's `--port`. INSTANCE_ID may be left unset on EC2:
`main` then reads the instance id from the metadata service (see docs/worker-agent.md).
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass
from urllib.parse import urlsplit

from fleet.schemas import check_http_url
from fleet.settings import SettingsError, option
from worker_agent.engines import engine_names


def _url_error(name: str, value: str | None) -> None:
    if value is None:
        return
    problem = check_http_url(value)
    if problem:
        raise SettingsError(f"{name} {problem}, got {value!r}")


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True)
class AgentSettings:
    # -- identity (SPEC) -------------------------------------------------------------------
    model_id: str = option(flag="--model-id", env="MODEL_ID",
                           help="the model the engine serves (required)")
    instance_id: str | None = option(None, flag="--instance-id", env="INSTANCE_ID",
                                     help="this machine's id; default: EC2 instance id from IMDS")
    worker_id: str | None = option(None, flag="--worker-id", env="WORKER_ID",
                                   help="requested worker id (the control plane may assign one)")
    provider_instance_id: str | None = option(None, flag="--provider-instance-id",
                                              env="PROVIDER_INSTANCE_ID",
                                              help="the cloud provider's id for this machine")
    # -- control plane ---------------------------------------------------------------------
    control_plane_url: str | None = option(None, flag="--control-plane-url",
                                           env="CONTROL_PLANE_URL",
                                           help="control plane base URL; empty: no enrollment")
    # Secrets come from the environment only: a flag would show in `ps` output.
    worker_auth_token: str | None = option(None, env="WORKER_AUTH_TOKEN", secret=True,
                                           help="worker token (else bootstrapped at register)")
    worker_auth_token_file: str | None = option(None, flag="--worker-auth-token-file",
                                                env="WORKER_AUTH_TOKEN_FILE",
                                                help="file keeping the worker token (mode 0600)")
    heartbeat_interval_s: float = option(10.0, flag="--heartbeat-interval-s",
                                         env="HEARTBEAT_INTERVAL_S", minimum=0.05,
                                         help="seconds between heartbeats (the control plane's "
                                              "reply may change it)")
    control_plane_timeout_s: float = option(5.0, flag="--control-plane-timeout-s",
                                            env="CONTROL_PLANE_TIMEOUT_S", minimum=0.05,
                                            help="timeout of each control plane call")
    backoff_max_s: float = option(30.0, flag="--backoff-max-s", env="CONTROL_PLANE_BACKOFF_MAX_S",
                                  minimum=0.05,
                                  help="longest wait between attempts while it is unreachable")
    # -- engine (SPEC) ---------------------------------------------------------------------
    engine: str = option("vllm", flag="--engine", env="ENGINE", choices=engine_names(),
                         help="engine kind")
    engine_url: str = option("http://127.0.0.1:8000", flag="--engine-url", env="ENGINE_URL",
                             help="where the agent reaches the engine")
    advertise_url: str | None = option(None, flag="--advertise-url", env="ADVERTISE_URL",
                                       help="engine URL the router should call "
                                            "(default: ENGINE_URL)")
    agent_url: str | None = option(None, flag="--agent-url", env="AGENT_URL",
                                   help="this agent's URL for probes and Prometheus "
                                        "(default: ADVERTISE_URL host, agent port)")
    tensor_parallel_size: int | None = option(None, flag="--tensor-parallel-size",
                                              env="TENSOR_PARALLEL_SIZE", minimum=1, maximum=64)
    gpu_memory_utilization: float | None = option(None, flag="--gpu-memory-utilization",
                                                  env="GPU_MEMORY_UTILIZATION", minimum=0.01,
                                                  maximum=1.0)
    engine_poll_interval_s: float = option(2.0, flag="--engine-poll-interval-s",
                                           env="ENGINE_POLL_INTERVAL_S", minimum=0.02,
                                           help="seconds between engine health/metrics polls")
    engine_timeout_s: float = option(5.0, flag="--engine-timeout-s", env="ENGINE_TIMEOUT_S",
                                     minimum=0.05, help="timeout of health/models/metrics calls")
    warmup_timeout_s: float = option(120.0, flag="--warmup-timeout-s", env="WARMUP_TIMEOUT_S",
                                     minimum=0.1, help="timeout of the warm-up request")
    metrics_window_s: float = option(60.0, flag="--metrics-window-s", env="METRICS_WINDOW_S",
                                     minimum=0.1,
                                     help="window of requests/s and latency quantiles")
    # -- supervisor mode -------------------------------------------------------------------
    engine_cmd: str | None = option(None, flag="--engine-cmd", env="ENGINE_CMD",
                                    help="start and supervise this engine command")
    supervise: bool = option(False, flag="--supervise", env="SUPERVISE",
                             help="start the engine from MODEL_ID etc. and supervise it")
    engine_stop_grace_s: float = option(30.0, flag="--engine-stop-grace-s",
                                        env="ENGINE_STOP_GRACE_S", minimum=0.0,
                                        help="SIGTERM to SIGKILL delay when stopping the engine")
    engine_restart_backoff_s: float = option(2.0, flag="--engine-restart-backoff-s",
                                             env="ENGINE_RESTART_BACKOFF_S", minimum=0.01,
                                             help="first delay before restarting a dead engine")
    # -- drain -----------------------------------------------------------------------------
    imds_url: str | None = option("http://169.254.169.254", flag="--imds-url", env="IMDS_URL",
                                  help="EC2 instance metadata service; empty disables the "
                                       "Spot watcher")
    imds_poll_interval_s: float = option(5.0, flag="--imds-poll-interval-s",
                                         env="IMDS_POLL_INTERVAL_S", minimum=0.02)
    imds_token_ttl_s: int = option(21600, flag="--imds-token-ttl-s", env="IMDS_TOKEN_TTL_S",
                                   minimum=1, maximum=21600)
    drain_timeout_s: float = option(120.0, flag="--drain-timeout-s", env="DRAIN_TIMEOUT_S",
                                    minimum=0.0,
                                    help="longest wait for in-flight requests without a deadline")
    drain_deadline_margin_s: float = option(15.0, flag="--drain-deadline-margin-s",
                                            env="DRAIN_DEADLINE_MARGIN_S", minimum=0.0,
                                            help="stop waiting this long before a Spot deadline")
    drain_settle_s: float = option(3.0, flag="--drain-settle-s", env="DRAIN_SETTLE_S",
                                   minimum=0.0,
                                   help="time for routers to see `draining` before idle checks")
    # -- serving ---------------------------------------------------------------------------
    host: str = option("0.0.0.0", flag="--host", help="address the agent listens on")
    port: int = option(8080, flag="--port", minimum=1, maximum=65535)
    log_level: str = option("info", flag="--log-level", env="LOG_LEVEL",
                            choices=("debug", "info", "warning", "error"))
    log_format: str = option("text", flag="--log-format", env="LOG_FORMAT",
                             choices=("json", "text"))

    def __post_init__(self) -> None:
        for name, value in (("CONTROL_PLANE_URL", self.control_plane_url),
                            ("ENGINE_URL", self.engine_url),
                            ("ADVERTISE_URL", self.advertise_url),
                            ("AGENT_URL", self.agent_url),
                            ("IMDS_URL", self.imds_url)):
            _url_error(name, value)
        if self.engine_cmd is not None:
            try:
                shlex.split(self.engine_cmd)
            except ValueError as exc:
                raise SettingsError(f"--engine-cmd cannot be split into words: {exc}") from None
        if self.worker_auth_token is not None and not self.worker_auth_token.strip():
            object.__setattr__(self, "worker_auth_token", None)
        # Frozen dataclass: derived defaults are filled once here, then never change.
        if self.advertise_url is None:
            object.__setattr__(self, "advertise_url", self.engine_url)
        if self.agent_url is None:
            parts = urlsplit(self.advertise_url or self.engine_url)
            host = _host_for_url(parts.hostname or "127.0.0.1")
            object.__setattr__(self, "agent_url", f"{parts.scheme}://{host}:{self.port}")

    @property
    def supervised(self) -> bool:
        return self.supervise or self.engine_cmd is not None

    @property
    def imds_enabled(self) -> bool:
        return bool(self.imds_url)

    def with_instance_id(self, instance_id: str) -> AgentSettings:
        return dataclasses.replace(self, instance_id=instance_id)
