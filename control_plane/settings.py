"""Control-plane settings: one frozen dataclass, read once from flags and the environment.

Names shared with other services keep the SPEC's spelling (`REDIS_URL`, `ADMIN_TOKEN`,
`HEARTBEAT_INTERVAL_S`, `WORKER_NETWORKS`, `LOG_LEVEL`, `LOG_FORMAT`, `STORE_PREFIX`); the rest
carry a `CONTROL_PLANE_` prefix so that `flotilla up`, which reads one environment for the router
and the control plane, never feeds one service's option to the other.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from fleet.settings import SettingsError, option

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# Loopback and the private ranges (RFC 1918, RFC 4193 unique local): where self-hosted workers live.
DEFAULT_WORKER_NETWORKS = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12",
                           "192.168.0.0/16", "fc00::/7")


@dataclass(frozen=True)
class ControlPlaneSettings:
    host: str = option("0.0.0.0", flag="--host", env="CONTROL_PLANE_HOST", help="listen address")
    port: int = option(8003, flag="--port", env="CONTROL_PLANE_PORT", minimum=1, maximum=65535,
                       help="listen port")
    redis_url: str | None = option(None, flag="--redis-url", env="REDIS_URL", secret=True,
                                   help="fleet store (required for `flotilla control-plane`)")
    store_prefix: str = option("flotilla", flag="--store-prefix", env="STORE_PREFIX",
                               help="prefix of every fleet-store key")
    admin_token: str | None = option(None, flag="--admin-token", env="ADMIN_TOKEN", secret=True,
                                     help="bearer token of the admin API (unset: admin disabled)")
    heartbeat_interval_s: float = option(10.0, flag="--heartbeat-interval", minimum=0.05,
                                         env="HEARTBEAT_INTERVAL_S", maximum=300.0,
                                         help="heartbeat period told to agents")
    missed_heartbeats: int = option(3, flag="--missed-heartbeats", minimum=1, maximum=100,
                                    env="CONTROL_PLANE_MISSED_HEARTBEATS",
                                    help="silent intervals before a worker expires")
    worker_networks: tuple[str, ...] = option(
        default_factory=lambda: DEFAULT_WORKER_NETWORKS, flag="--worker-networks",
        env="WORKER_NETWORKS", help="comma-separated CIDRs advertised URLs must fall in")
    probe_interval_s: float = option(10.0, flag="--probe-interval", minimum=0.05,
                                     env="CONTROL_PLANE_PROBE_INTERVAL_S",
                                     help="period of the /readyz probe of ready workers")
    probe_timeout_s: float = option(3.0, flag="--probe-timeout", minimum=0.01,
                                    env="CONTROL_PLANE_PROBE_TIMEOUT_S",
                                    help="whole-probe timeout")
    probe_failure_threshold: int = option(2, flag="--probe-failure-threshold", minimum=1,
                                          env="CONTROL_PLANE_PROBE_FAILURE_THRESHOLD",
                                          maximum=100,
                                          help="consecutive failed probes before not ready")
    probe_concurrency: int = option(64, flag="--probe-concurrency", minimum=1, maximum=4096,
                                    env="CONTROL_PLANE_PROBE_CONCURRENCY",
                                    help="probes in flight at once")
    store_check_interval_s: float = option(1.0, flag="--store-check-interval", minimum=0.05,
                                           env="CONTROL_PLANE_STORE_CHECK_INTERVAL_S",
                                           help="how often the store's epoch is checked")
    store_write_coalesce_s: float = option(0.02, flag="--store-write-coalesce", minimum=0.0,
                                           maximum=1.0, env="CONTROL_PLANE_STORE_WRITE_COALESCE_S",
                                           help="wait this long to batch worker writes together")
    store_write_wait_s: float = option(1.0, flag="--store-write-wait", minimum=0.0,
                                       env="CONTROL_PLANE_STORE_WRITE_WAIT_S",
                                       help="how long a worker call waits for its store write")
    max_body_bytes: int = option(65536, flag="--max-body-bytes", minimum=1024,
                                 env="CONTROL_PLANE_MAX_BODY_BYTES", maximum=16 * 1024 * 1024,
                                 help="largest request body accepted")
    sd_max_targets: int = option(10000, flag="--sd-max-targets", minimum=1,
                                 env="CONTROL_PLANE_SD_MAX_TARGETS",
                                 help="most targets /sd/workers returns")
    log_level: str = option("info", flag="--log-level", env="LOG_LEVEL", choices=LOG_LEVELS)
    log_format: str = option("text", flag="--log-format", env="LOG_FORMAT",
                             choices=("text", "json"))
    # bursts and estimates (docs/capacity.md "Bursts", "Estimates") ------------------------------
    burst_interval_s: float = option(2.0, flag="--burst-interval", minimum=0.05, maximum=300.0,
                                     env="CONTROL_PLANE_BURST_INTERVAL_S",
                                     help="how often running bursts observe their pool")
    burst_capacity_timeout_s: float = option(
        1800.0, flag="--burst-capacity-timeout", minimum=1.0,
        env="CONTROL_PLANE_BURST_CAPACITY_TIMEOUT_S",
        help="a burst whose pool never got a ready replica within this fails")
    throughput_sample_interval_s: float = option(
        30.0, flag="--throughput-sample-interval", minimum=0.05,
        env="CONTROL_PLANE_THROUGHPUT_SAMPLE_INTERVAL_S",
        help="how often the pools' vLLM token counters are read (measured throughput)")
    estimate_table: str | None = option(
        None, flag="--estimate-table", env="CONTROL_PLANE_ESTIMATE_TABLE",
        help="JSON file: throughput per instance type and model, prices, upstream API price")

    def __post_init__(self) -> None:
        for cidr in self.worker_networks:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise SettingsError(
                    f"WORKER_NETWORKS: {cidr!r} is not a network (CIDR such as 10.0.0.0/8)"
                ) from None
        if self.admin_token is not None and len(self.admin_token) < 16:
            raise SettingsError("ADMIN_TOKEN must be at least 16 characters long")

    @property
    def expiry_after_s(self) -> float:
        """Silence after which a worker is forgotten."""
        return self.heartbeat_interval_s * self.missed_heartbeats
