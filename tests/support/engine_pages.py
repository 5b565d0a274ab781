"""Engine `/metrics` pages built the way the engines build them, for parser tests and benchmarks.

vLLM exposes its metrics with prometheus_client, so the page here is produced by the same library
with vLLM's metric names, label names (`model_name`, `engine`) and bucket layouts, plus the
process/platform/GC collectors a default registry carries. TEI's page (Rust `metrics` exporter)
follows the same text format with TEI's names: a gauge, counters without `_total`, and a histogram
whose buckets grow by 1.5x from 15 microseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]
TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                10.0, 20.0, 40.0, 80.0]
LATENCY_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                   60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0]
TOKEN_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
TEI_DURATION_BUCKETS = [0.00001 * 1.5 ** (i + 1) for i in range(35)]


def vllm_page(
    *,
    model: str = "m",
    engines: int = 1,
    running: float = 0,
    waiting: float = 0,
    kv_cache_usage: float | None = 0.25,
    deprecated_kv_cache_usage: float | None = None,
    ttft: Iterable[float] = (),
    e2e: Iterable[float] = (),
    success: Mapping[str, int] | None = None,
    process_metrics: bool = True,
) -> str:
    """A vLLM V1 metrics page. Observations and counts go to engine core 0; gauges are set on
    every core (`running`/`waiting` per core, so the page's total is `engines` times them)."""
    registry = CollectorRegistry()
    labels = ["model_name", "engine"]
    cores = [str(i) for i in range(engines)]

    def gauge(name: str, doc: str, value: float | None) -> None:
        metric = Gauge(name, doc, labels, registry=registry)
        if value is not None:
            for core in cores:
                metric.labels(model, core).set(value)

    def histogram(name: str, doc: str, buckets: list[float],
                  values: Iterable[float] = ()) -> None:
        metric = Histogram(name, doc, labels, buckets=buckets, registry=registry)
        for core in cores:
            metric.labels(model, core)
        for value in values:
            metric.labels(model, "0").observe(value)

    gauge("vllm:num_requests_running", "Number of requests in model execution batches.", running)
    gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", waiting)
    gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. DEPRECATED.",
          deprecated_kv_cache_usage)
    gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
          kv_cache_usage)
    for name in ("vllm:prefix_cache_queries", "vllm:prefix_cache_hits", "vllm:num_preemptions",
                 "vllm:prompt_tokens", "vllm:generation_tokens"):
        counter = Counter(name, name, labels, registry=registry)
        for core in cores:
            counter.labels(model, core).inc(0)
    finished = Counter("vllm:request_success", "Count of successfully processed requests.",
                       [*labels, "finished_reason"], registry=registry)
    for reason in ("stop", "length", "abort"):
        for core in cores:
            finished.labels(model, core, reason)
    for reason, count in (success or {}).items():
        finished.labels(model, "0", reason).inc(count)
    for name in ("vllm:request_prompt_tokens", "vllm:request_generation_tokens",
                 "vllm:request_max_num_generation_tokens", "vllm:request_params_max_tokens"):
        histogram(name, name, TOKEN_BUCKETS)
    histogram("vllm:iteration_tokens_total", "tokens per step",
              [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384])
    histogram("vllm:request_params_n", "n", [1, 2, 5, 10, 20])
    histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
              TTFT_BUCKETS, ttft)
    histogram("vllm:time_per_output_token_seconds", "time per output token", TPOT_BUCKETS)
    histogram("vllm:time_per_prefill_token_request_seconds", "prefill time per token",
              [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0])
    histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
              LATENCY_BUCKETS, e2e)
    for name in ("vllm:request_queue_time_seconds", "vllm:request_inference_time_seconds",
                 "vllm:request_prefill_time_seconds", "vllm:request_decode_time_seconds"):
        histogram(name, name, LATENCY_BUCKETS)
    info = Gauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig",
                 ["block_size", "cache_dtype", "gpu_memory_utilization", "engine"],
                 registry=registry)
    info.labels("16", "auto", "0.9", "0").set(1)
    if process_metrics:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return generate_latest(registry).decode()


def tei_page(
    *,
    queue: float = 0,
    requests: int = 0,
    successes: int = 0,
    failures: Mapping[str, int] | None = None,
    durations: Iterable[float] = (),
) -> str:
    """A text-embeddings-inference metrics page (names as TEI's router records them)."""
    lines = ["# TYPE te_queue_size gauge", f"te_queue_size {queue}",
             "# TYPE te_request_count counter", f'te_request_count{{method="single"}} {requests}',
             "# TYPE te_request_success counter",
             f'te_request_success{{method="single"}} {successes}']
    if failures:
        lines.append("# TYPE te_request_failure counter")
        lines += [f'te_request_failure{{err="{kind}"}} {n}' for kind, n in failures.items()]
    values = list(durations)
    lines.append("# TYPE te_request_duration histogram")
    for bound in TEI_DURATION_BUCKETS:
        lines.append(f'te_request_duration_bucket{{le="{bound}"}} '
                     f"{sum(1 for v in values if v <= bound)}")
    lines.append(f'te_request_duration_bucket{{le="+Inf"}} {len(values)}')
    lines.append(f"te_request_duration_sum {sum(values)}")
    lines.append(f"te_request_duration_count {len(values)}")
    return "\n".join(lines) + "\n"
