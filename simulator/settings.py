"""The simulator's settings: one frozen dataclass read once from flags, then `SIM_*` variables.

Latency defaults are small but not zero so that a demo looks like an engine; benchmarks and most
tests pass `--ttft-ms 0 --itl-ms 0`, which removes every sleep from the request path.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet.settings import SettingsError, option

KINDS = ("vllm", "tei")

# Per-kind defaults for fields left unset (None) on the command line.
_DEFAULT_MAX_NUM_SEQS = {"vllm": 256, "tei": 32}


@dataclass(frozen=True)
class SimulatorSettings:
    kind: str = option("vllm", flag="--kind", env="SIM_KIND", choices=KINDS,
                       help="which engine to imitate")
    host: str = option("127.0.0.1", flag="--host", env="SIM_HOST", help="address to listen on")
    port: int = option(8000, flag="--port", env="SIM_PORT", minimum=1, maximum=65535,
                       help="port to listen on")
    model: str = option("sim-model", flag="--model", env="SIM_MODEL",
                        help="served model id (listed by /v1/models, checked on every request)")
    max_model_len: int = option(4096, flag="--max-model-len", env="SIM_MAX_MODEL_LEN", minimum=1,
                                help="context length: prompt + max_tokens above it is a 400")
    # Latency model (see simulator/latency.py).
    ttft_ms: float = option(20.0, flag="--ttft-ms", env="SIM_TTFT_MS", minimum=0,
                            help="time to first token of a lone request, ms")
    itl_ms: float = option(5.0, flag="--itl-ms", env="SIM_ITL_MS", minimum=0,
                           help="inter-token latency of a lone request, ms")
    max_num_seqs: int | None = option(None, flag="--max-num-seqs", env="SIM_MAX_NUM_SEQS",
                                      minimum=1,
                                      help="sequences in the running batch (vllm 256, tei 32)")
    batch_slowdown: float = option(1.0, flag="--batch-slowdown", env="SIM_BATCH_SLOWDOWN",
                                   minimum=0,
                                   help="extra TTFT/ITL fraction when the batch is full")
    prefill_ms_per_token: float = option(0.0, flag="--prefill-ms-per-token",
                                         env="SIM_PREFILL_MS_PER_TOKEN", minimum=0,
                                         help="TTFT added per prompt token, ms")
    jitter: float = option(0.0, flag="--jitter", env="SIM_JITTER", minimum=0, maximum=1,
                           help="seeded +/- fraction applied to every latency")
    load_s: float = option(0.0, flag="--load-s", env="SIM_LOAD_S", minimum=0,
                           help="loading period: /health and inference answer 503 until over")
    output_tokens: int = option(32, flag="--output-tokens", env="SIM_OUTPUT_TOKENS", minimum=0,
                                help="length of every answer; a request's max_tokens caps it")
    seed: int = option(0, flag="--seed", env="SIM_SEED", help="seed of text, vectors and faults")
    # Faults at start; all of them can be changed at run time through /admin/faults.
    error_rate: float = option(0.0, flag="--error-rate", env="SIM_ERROR_RATE", minimum=0,
                               maximum=1, help="fraction of inference requests answered 500")
    hang_rate: float = option(0.0, flag="--hang-rate", env="SIM_HANG_RATE", minimum=0,
                              maximum=1, help="fraction of inference requests never answered")
    slow_factor: float = option(1.0, flag="--slow-factor", env="SIM_SLOW_FACTOR", minimum=0.001,
                                help="multiplier on every latency (a slow or throttled GPU)")
    crash_after: int | None = option(None, flag="--crash-after", env="SIM_CRASH_AFTER",
                                     minimum=0,
                                     help="serve N inference requests, exit hard on the next")
    abort_stream_after_tokens: int | None = option(
        None, flag="--abort-stream-after-tokens", env="SIM_ABORT_STREAM_AFTER_TOKENS", minimum=0,
        help="close every stream after N tokens, without [DONE]")
    # TEI kind.
    dims: int = option(384, flag="--dims", env="SIM_DIMS", minimum=1, maximum=65536,
                       help="embedding size (tei)")
    max_concurrent_requests: int = option(512, flag="--max-concurrent-requests",
                                          env="SIM_MAX_CONCURRENT_REQUESTS", minimum=1,
                                          help="tei: 429 beyond this many requests in flight")
    max_client_batch_size: int = option(32, flag="--max-client-batch-size",
                                        env="SIM_MAX_CLIENT_BATCH_SIZE", minimum=1,
                                        help="tei: 413 for more inputs in one request")
    # Process.
    shutdown_grace_s: float = option(3.0, flag="--shutdown-grace-s", env="SIM_SHUTDOWN_GRACE_S",
                                     minimum=0,
                                     help="on SIGTERM, time left to requests in flight")
    keepalive_timeout_s: float = option(75.0, flag="--keepalive-timeout-s",
                                        env="SIM_KEEPALIVE_TIMEOUT_S", minimum=0.1,
                                        help="idle keep-alive connections are closed after it")
    log_level: str = option("info", flag="--log-level", env="LOG_LEVEL",
                            choices=("debug", "info", "warning", "error"))
    log_format: str = option("text", flag="--log-format", env="LOG_FORMAT",
                             choices=("text", "json"))
    access_log: bool = option(False, flag="--access-log", env="SIM_ACCESS_LOG",
                              help="log each inference request with its x-request-id, as vLLM "
                                   "logs the requests it receives")

    def __post_init__(self) -> None:
        if self.error_rate + self.hang_rate > 1.0:
            raise SettingsError(
                f"--error-rate ({self.error_rate}) + --hang-rate ({self.hang_rate}) must be <= 1"
            )
        if not self.model.strip():
            raise SettingsError("--model must not be empty")

    @property
    def batch_size(self) -> int:
        """`--max-num-seqs`, or the kind's own default when it was not given."""
        if self.max_num_seqs is not None:
            return self.max_num_seqs
        return _DEFAULT_MAX_NUM_SEQS[self.kind]
