"""Control-plane settings: one frozen dataclass, read once from flags and the environment.

Names shared with other services keep the SPEC's spelling (`REDIS_URL`, `ADMIN_TOKEN`,
`HEARTBEAT_INTERVAL_S`, `WORKER_NETWORKS`, `LOG_LEVEL`, `LOG_FORMAT`, `STORE_PREFIX`); the rest
carry a `CONTROL_PLANE_` prefix so that `flotilla up`, which reads one environment for the router
and the control plane, never feeds one service's option to the other.
"""

from __future__ import annotations

import ipaddress
import os
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
    # capacity: providers, autoscaler, reconciliation (docs/capacity.md) -------------------------
    providers: tuple[str, ...] = option(
        default_factory=lambda: ("local",), flag="--providers", env="CONTROL_PLANE_PROVIDERS",
        help="capacity providers to enable (comma-separated: local, aws)")
    public_url: str | None = option(None, flag="--public-url", env="CONTROL_PLANE_PUBLIC_URL",
                                    help="the URL launched workers use to reach this control "
                                         "plane (default: http://127.0.0.1:<port>)")
    autoscale_interval_s: float = option(10.0, flag="--autoscale-interval", minimum=0.05,
                                         env="CONTROL_PLANE_AUTOSCALE_INTERVAL_S",
                                         help="autoscaler decision period")
    autoscale_interval_at_zero_s: float = option(
        2.0, flag="--autoscale-interval-at-zero", minimum=0.05,
        env="CONTROL_PLANE_AUTOSCALE_INTERVAL_AT_ZERO_S",
        help="decision period while a pool has no replica (scale from zero quickly)")
    autoscale_policy: str = option(
        "target_tracking", flag="--autoscale-policy", env="CONTROL_PLANE_AUTOSCALE_POLICY",
        choices=("target_tracking", "queue_depth_only", "static"),
        help="autoscaling policy for every pool (docs/capacity.md, Policies)")
    autoscale_signal_window_s: float = option(
        60.0, flag="--autoscale-signal-window", minimum=0.05,
        env="CONTROL_PLANE_AUTOSCALE_SIGNAL_WINDOW_S",
        help="how far back the smoothed queue, latency and GPU signals look")
    autoscale_signal_half_life_s: float = option(
        15.0, flag="--autoscale-signal-half-life", minimum=0.01,
        env="CONTROL_PLANE_AUTOSCALE_SIGNAL_HALF_LIFE_S",
        help="half-life of the queue depth and GPU utilisation EWMA")
    scale_down_window_s: float = option(300.0, flag="--scale-down-window", minimum=0.0,
                                        env="CONTROL_PLANE_SCALE_DOWN_WINDOW_S",
                                        help="scale down to the highest recommendation of this "
                                             "window (Kubernetes HPA default)")
    scale_down_periods: int = option(3, flag="--scale-down-periods", minimum=1, maximum=1000,
                                     env="CONTROL_PLANE_SCALE_DOWN_PERIODS",
                                     help="consecutive periods recommending fewer replicas")
    cold_demand_window_s: float = option(30.0, flag="--cold-demand-window", minimum=0.0,
                                         env="CONTROL_PLANE_COLD_DEMAND_WINDOW_S",
                                         help="a pool a router found cold this recently counts "
                                              "as in demand (and not idle)")
    drain_timeout_s: float = option(120.0, flag="--drain-timeout", minimum=0.0,
                                    env="CONTROL_PLANE_DRAIN_TIMEOUT_S",
                                    help="longest wait for a draining worker before its "
                                         "instance is terminated")
    boot_timeout_s: float = option(1200.0, flag="--boot-timeout", minimum=1.0,
                                   env="CONTROL_PLANE_BOOT_TIMEOUT_S",
                                   help="an instance with no worker after this is released")
    launch_retry_s: float = option(30.0, flag="--launch-retry", minimum=0.0,
                                   env="CONTROL_PLANE_LAUNCH_RETRY_S",
                                   help="pause after a pool found no capacity")
    reconcile_interval_s: float = option(60.0, flag="--reconcile-interval", minimum=0.05,
                                         env="CONTROL_PLANE_RECONCILE_INTERVAL_S",
                                         help="period of provider/store reconciliation")
    reconcile_grace_s: float = option(300.0, flag="--reconcile-grace", minimum=0.0,
                                      env="CONTROL_PLANE_RECONCILE_GRACE_S",
                                      help="records younger than this are never forgotten")
    orphan_grace_s: float = option(600.0, flag="--orphan-grace", minimum=0.0,
                                   env="CONTROL_PLANE_ORPHAN_GRACE_S",
                                   help="on a fresh (empty) store, instances of unknown pools "
                                        "are kept this long for their pools to come back")
    local_workdir: str = option(
        default_factory=lambda: os.path.join(
            os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"),
            "flotilla", "instances"),
        flag="--local-workdir", env="CONTROL_PLANE_LOCAL_WORKDIR",
        help="local provider: one directory per simulated instance")
    local_boot_delay_s: float = option(0.0, flag="--local-boot-delay", minimum=0.0,
                                       env="CONTROL_PLANE_LOCAL_BOOT_DELAY_S",
                                       help="local provider: simulated machine boot")
    local_prices: tuple[str, ...] = option(
        default_factory=tuple, flag="--local-prices", env="CONTROL_PLANE_LOCAL_PRICES",
        help="local provider: fake $/h per type, e.g. sim-gpu=0.5,sim-big=2")
    local_simulator_args: str = option("", flag="--local-simulator-args",
                                       env="CONTROL_PLANE_LOCAL_SIMULATOR_ARGS",
                                       help="local provider: extra simulator flags")
    local_agent_args: str = option("", flag="--local-agent-args",
                                   env="CONTROL_PLANE_LOCAL_AGENT_ARGS",
                                   help="local provider: extra worker agent flags")
    local_imds_url: str = option("", flag="--local-imds-url", env="CONTROL_PLANE_LOCAL_IMDS_URL",
                                 help="local provider: fake metadata service for Spot notices "
                                      "({instance_id} is replaced); empty: none")
    local_terminate_grace_s: float = option(60.0, flag="--local-terminate-grace", minimum=0.0,
                                            env="CONTROL_PLANE_LOCAL_TERMINATE_GRACE_S",
                                            help="local provider: SIGTERM to SIGKILL")
    aws_cluster: str = option("flotilla", flag="--aws-cluster", env="CONTROL_PLANE_AWS_CLUSTER",
                              help="aws: the flotilla:cluster tag of this control plane")
    aws_agent_package: str = option("flotilla", flag="--aws-agent-package",
                                    env="CONTROL_PLANE_AWS_AGENT_PACKAGE",
                                    help="aws: pip requirement instances install for the agent")
    aws_region: str | None = option(None, flag="--aws-region", env="CONTROL_PLANE_AWS_REGION",
                                    help="aws: region (default: the AWS chain, AWS_REGION)")
    aws_endpoint_url: str | None = option(None, flag="--aws-endpoint-url",
                                          env="CONTROL_PLANE_AWS_ENDPOINT_URL",
                                          help="aws: API endpoint (default: AWS_ENDPOINT_URL)")
    aws_subnet_ids: tuple[str, ...] = option(default_factory=tuple, flag="--aws-subnets",
                                             env="CONTROL_PLANE_AWS_SUBNET_IDS",
                                             help="aws: subnets (default: each zone's default)")
    aws_security_group_ids: tuple[str, ...] = option(
        default_factory=tuple, flag="--aws-security-groups",
        env="CONTROL_PLANE_AWS_SECURITY_GROUP_IDS", help="aws: security groups")
    aws_ami_id: str | None = option(None, flag="--aws-ami", env="CONTROL_PLANE_AWS_AMI_ID",
                                    help="aws: AMI (default: the DLAMI SSM parameter)")
    aws_ami_parameter: str | None = option(None, flag="--aws-ami-parameter",
                                           env="CONTROL_PLANE_AWS_AMI_PARAMETER",
                                           help="aws: SSM parameter naming the AMI")
    aws_instance_profile: str | None = option(None, flag="--aws-instance-profile",
                                              env="CONTROL_PLANE_AWS_INSTANCE_PROFILE",
                                              help="aws: instance profile name or ARN")
    aws_key_name: str | None = option(None, flag="--aws-key-name",
                                      env="CONTROL_PLANE_AWS_KEY_NAME", help="aws: SSH key pair")
    aws_root_volume_gb: int | None = option(None, flag="--aws-root-volume-gb", minimum=8,
                                            env="CONTROL_PLANE_AWS_ROOT_VOLUME_GB",
                                            help="aws: root volume size (model weights)")
    aws_on_demand_prices: tuple[str, ...] = option(
        default_factory=tuple, flag="--aws-on-demand-prices",
        env="CONTROL_PLANE_AWS_ON_DEMAND_PRICES",
        help="aws: on-demand $/h per type (no EC2 API has them), e.g. g5.xlarge=1.006")
    aws_hf_token_parameter: str | None = option(None, flag="--aws-hf-token-parameter",
                                                env="CONTROL_PLANE_AWS_HF_TOKEN_PARAMETER",
                                                help="aws: SSM SecureString with the HF token")
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
        for name in self.providers:
            if name not in ("local", "aws"):
                raise SettingsError(f"CONTROL_PLANE_PROVIDERS: unknown provider {name!r} "
                                    "(local, aws)")
        parse_prices("CONTROL_PLANE_LOCAL_PRICES", self.local_prices)
        parse_prices("CONTROL_PLANE_AWS_ON_DEMAND_PRICES", self.aws_on_demand_prices)

    @property
    def agent_facing_url(self) -> str:
        """The control plane URL launched workers are told (CONTROL_PLANE_URL)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def expiry_after_s(self) -> float:
        """Silence after which a worker is forgotten."""
        return self.heartbeat_interval_s * self.missed_heartbeats


def parse_prices(name: str, items: tuple[str, ...]) -> dict[str, float]:
    """`type=price` items to {type: $/h}; errors name the variable."""
    prices: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            price = float(value)
        except ValueError:
            price = -1.0
        if not sep or not key.strip() or not price >= 0 or price == float("inf"):
            raise SettingsError(f"{name}: {item!r} is not instance-type=price-per-hour")
        prices[key.strip()] = price
    return prices
