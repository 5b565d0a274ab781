"""The router's settings: one frozen dataclass, read once from flags and the environment.

Flags win over environment variables, which win over the defaults below. `flotilla router` needs
`REDIS_URL`; `create_app(settings, store=...)` accepts an injected store instead (`flotilla up`).
Auth is on unless `--no-auth` is passed: there is deliberately no environment variable for it, so
a stray variable cannot open the router.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from fleet.settings import SettingsError, option
from router.complexity import SCORERS

POLICIES = ("least_outstanding", "lowest_queue_depth", "round_robin")
LOG_LEVELS = ("debug", "info", "warning", "error")


def _random_router_id() -> str:
    return f"router-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class RouterSettings:
    host: str = option("0.0.0.0", flag="--host", env="ROUTER_HOST", help="listen address")
    port: int = option(8000, flag="--port", env="ROUTER_PORT", minimum=1, maximum=65535,
                       help="listen port")
    redis_url: str | None = option(None, flag="--redis-url", env="REDIS_URL", secret=True,
                                   help="fleet store (required for `flotilla router`)")
    store_prefix: str = option("flotilla", flag="--store-prefix", env="STORE_PREFIX",
                               help="key prefix in the fleet store")
    router_id: str = option(flag="--router-id", env="ROUTER_ID",
                            default_factory=_random_router_id,
                            help="this replica's id in the store (default: random per process)")
    no_auth: bool = option(False, flag="--no-auth",
                           help="serve without API keys (there is no environment variable)")

    # requests
    max_body_bytes: int = option(16 * 1024 * 1024, flag="--max-body-bytes",
                                 env="ROUTER_MAX_BODY_BYTES", minimum=1024,
                                 help="larger request bodies get 413")
    connect_timeout_s: float = option(2.0, flag="--connect-timeout", env="ROUTER_CONNECT_TIMEOUT_S",
                                      minimum=0.01, help="TCP connect to a worker or upstream")
    first_byte_timeout_s: float = option(300.0, flag="--first-byte-timeout",
                                         env="ROUTER_FIRST_BYTE_TIMEOUT_S", minimum=0.01,
                                         help="wait for the first response byte (a non-streamed "
                                              "answer arrives whole, so this bounds generation)")
    idle_timeout_s: float = option(60.0, flag="--idle-timeout", env="ROUTER_IDLE_TIMEOUT_S",
                                   minimum=0.01, help="longest silence between response chunks")
    upstream_client: str = option("httptools", flag="--upstream-client",
                                  env="ROUTER_UPSTREAM_CLIENT", choices=("httptools", "aiohttp"),
                                  help="HTTP client for workers and upstreams (see "
                                       "docs/benchmarks.md for their costs)")
    max_connections_per_worker: int = option(512, flag="--max-connections-per-worker",
                                             env="ROUTER_MAX_CONNECTIONS_PER_WORKER", minimum=1,
                                             help="keep-alive pool size per worker host")

    # failover and circuit breaking
    max_attempts: int = option(3, flag="--max-attempts", env="ROUTER_MAX_ATTEMPTS", minimum=1,
                               maximum=20, help="upstream attempts per request, first included")
    retry_deadline_s: float = option(30.0, flag="--retry-deadline", env="ROUTER_RETRY_DEADLINE_S",
                                     minimum=0.0, help="no new attempt starts after this long")
    backoff_base_s: float = option(0.05, flag="--backoff-base", env="ROUTER_BACKOFF_BASE_S",
                                   minimum=0.0, help="backoff before the 2nd round of attempts")
    backoff_max_s: float = option(2.0, flag="--backoff-max", env="ROUTER_BACKOFF_MAX_S",
                                  minimum=0.0, help="cap of the exponential backoff")
    breaker_threshold: int = option(3, flag="--breaker-threshold", env="ROUTER_BREAKER_THRESHOLD",
                                    minimum=1, help="consecutive failures that open a circuit")
    breaker_recovery_s: float = option(120.0, flag="--breaker-recovery",
                                       env="ROUTER_BREAKER_RECOVERY_S", minimum=0.0,
                                       help="open circuit waits this long before a probe")

    max_stream_resumes: int = option(2, flag="--max-stream-resumes",
                                     env="ROUTER_MAX_STREAM_RESUMES", minimum=0, maximum=10,
                                     help="continuations of one broken stream on other workers "
                                          "(routes with stream_resume; 0 turns it off)")

    complexity_scorer: str = option("heuristic", flag="--complexity-scorer",
                                    env="ROUTER_COMPLEXITY_SCORER", choices=tuple(SCORERS),
                                    help="scores requests for routes with an auto target")

    # balancing and routes
    policy: str = option("least_outstanding", flag="--policy", env="ROUTER_POLICY",
                         choices=POLICIES, help="balancing policy within a pool")
    cold_start_wait_s: float = option(5.0, flag="--cold-start-wait", env="ROUTER_COLD_START_WAIT_S",
                                      minimum=0.0, help="hold a request this long for a cold "
                                                        "pool before 503")

    # fleet store
    report_period_s: float = option(0.25, flag="--report-period", env="ROUTER_REPORT_PERIOD_S",
                                    minimum=0.01, help="publish in-flight counts, demand and "
                                                       "rate-limit counts this often")
    refresh_period_s: float = option(1.0, flag="--refresh-period", env="ROUTER_REFRESH_PERIOD_S",
                                     minimum=0.01, help="full snapshot refresh period")
    max_snapshot_age_s: float = option(300.0, flag="--max-snapshot-age",
                                       env="ROUTER_MAX_SNAPSHOT_AGE_S", minimum=0.1,
                                       help="/readyz turns 503 when the store has been "
                                            "unreachable this long")
    store_timeout_s: float = option(1.0, flag="--store-timeout", env="ROUTER_STORE_TIMEOUT_S",
                                    minimum=0.01, help="bound of one store call")
    key_cache_ttl_s: float = option(30.0, flag="--key-cache-ttl", env="ROUTER_KEY_CACHE_TTL_S",
                                    minimum=0.0, help="how long a looked-up key is trusted")
    negative_cache_ttl_s: float = option(5.0, flag="--negative-cache-ttl",
                                         env="ROUTER_NEGATIVE_CACHE_TTL_S", minimum=0.0,
                                         help="how long an unknown key is remembered")
    negative_cache_size: int = option(10_000, flag="--negative-cache-size",
                                      env="ROUTER_NEGATIVE_CACHE_SIZE", minimum=1,
                                      help="unknown keys remembered at most")

    log_level: str = option("info", flag="--log-level", env="LOG_LEVEL", choices=LOG_LEVELS)
    log_format: str = option("text", flag="--log-format", env="LOG_FORMAT",
                             choices=("json", "text"))
    access_log: bool = option(False, flag="--access-log", env="ROUTER_ACCESS_LOG",
                              help="one log line per proxied request (logger router.access)")

    def __post_init__(self) -> None:
        if self.backoff_max_s < self.backoff_base_s:
            raise SettingsError(f"ROUTER_BACKOFF_MAX_S ({self.backoff_max_s}) must be >= "
                                f"ROUTER_BACKOFF_BASE_S ({self.backoff_base_s})")
        if not self.router_id or len(self.router_id) > 128:
            raise SettingsError("ROUTER_ID must be 1 to 128 characters")

    @property
    def peer_stale_s(self) -> float:
        """Reports of other replicas older than this are ignored (a few periods, at least 1 s)."""
        return max(4 * self.report_period_s, 1.0)
