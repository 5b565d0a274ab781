"""The metrics each imitated engine exposes, with its own names, labels and buckets.

vLLM (V1 engine, `vllm/v1/metrics/loggers.py`): labels `model_name` and `engine`; counters are
written `<name>_total` as prometheus_client does. TEI (`router/src/prometheus.rs` and the
handlers): counters without `_total`, `method`/`err` labels, durations in a 1.5x geometric ladder.
`promtool check metrics` warns that TEI's counters lack `_total`: that is TEI's real naming, which
dashboards and the worker agent read, so we keep it.
"""

from __future__ import annotations

from simulator.engine import Engine
from simulator.metrics import Registry

_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
_TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                 7.5, 10.0, 20.0, 40.0, 80.0)
_REQUEST_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                    60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
_TEI_DURATION_BUCKETS = tuple(0.00001 * 1.5 ** n for n in range(1, 36))

FINISH_REASONS = ("stop", "length", "abort")


def _one_two_five(limit: int) -> tuple[int, ...]:
    """vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, ... up to `limit`."""
    out: list[int] = []
    scale = 1
    while True:
        for mantissa in (1, 2, 5):
            if mantissa * scale > limit:
                return tuple(out)
            out.append(mantissa * scale)
        scale *= 10


class VllmMetrics:
    def __init__(self, engine: Engine, model_name: str, max_model_len: int) -> None:
        self.registry = Registry()
        reg = self.registry
        labels = ("model_name", "engine")
        values = (model_name, "0")
        running = reg.gauge("vllm:num_requests_running",
                            "Number of requests in model execution batches.", labels)
        running.labels(*values).set_function(lambda: engine.running)
        waiting = reg.gauge("vllm:num_requests_waiting",
                            "Number of requests waiting to be processed.", labels)
        waiting.labels(*values).set_function(lambda: engine.waiting)
        usage = reg.gauge("vllm:kv_cache_usage_perc",
                          "KV-cache usage. 1 means 100 percent usage.", labels)
        usage.labels(*values).set_function(lambda: engine.kv_cache_usage)
        old_usage = reg.gauge("vllm:gpu_cache_usage_perc",
                              "GPU KV-cache usage. 1 means 100 percent usage."
                              "DEPRECATED: Use vllm:kv_cache_usage_perc instead.", labels)
        old_usage.labels(*values).set_function(lambda: engine.kv_cache_usage)
        self.prompt_tokens = reg.counter("vllm:prompt_tokens",
                                         "Number of prefill tokens processed.",
                                         labels).labels(*values)
        self.generation_tokens = reg.counter("vllm:generation_tokens",
                                             "Number of generation tokens processed.",
                                             labels).labels(*values)
        success = reg.counter("vllm:request_success", "Count of successfully processed requests.",
                              (*labels, "finished_reason"))
        self.success = {reason: success.labels(*values, reason) for reason in FINISH_REASONS}
        self.ttft = reg.histogram("vllm:time_to_first_token_seconds",
                                  "Histogram of time to first token in seconds.", _TTFT_BUCKETS,
                                  labels).labels(*values)
        self.tpot = reg.histogram("vllm:time_per_output_token_seconds",
                                  "Histogram of time per output token in seconds.",
                                  _TPOT_BUCKETS, labels).labels(*values)
        self.e2e = reg.histogram("vllm:e2e_request_latency_seconds",
                                 "Histogram of e2e request latency in seconds.", _REQUEST_BUCKETS,
                                 labels).labels(*values)
        self.queue_time = reg.histogram("vllm:request_queue_time_seconds",
                                        "Histogram of time spent in WAITING phase for request.",
                                        _REQUEST_BUCKETS, labels).labels(*values)
        token_buckets = _one_two_five(max_model_len)
        self.request_prompt_tokens = reg.histogram(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", token_buckets,
            labels).labels(*values)
        self.request_generation_tokens = reg.histogram(
            "vllm:request_generation_tokens", "Number of generation tokens processed.",
            token_buckets, labels).labels(*values)

    def finished(self, reason: str, *, prompt_tokens: int, generated: int, e2e_s: float,
                 queued_s: float) -> None:
        """One request left the engine: done ("stop"/"length") or cancelled ("abort")."""
        self.success[reason].inc()
        self.prompt_tokens.inc(prompt_tokens)
        self.generation_tokens.inc(generated)
        self.e2e.observe(e2e_s)
        self.queue_time.observe(queued_s)
        self.request_prompt_tokens.observe(prompt_tokens)
        self.request_generation_tokens.observe(generated)


class TeiMetrics:
    def __init__(self, engine: Engine) -> None:
        self.registry = Registry()
        reg = self.registry
        count = reg.counter("te_request_count", "Number of embedding requests received.",
                            ("method",), sample_suffix="")
        success = reg.counter("te_request_success", "Number of successful embedding requests.",
                              ("method",), sample_suffix="")
        self.count = {m: count.labels(m) for m in ("single", "batch")}
        self.success = {m: success.labels(m) for m in ("single", "batch")}
        self._failure = reg.counter("te_request_failure", "Number of failed embedding requests.",
                                    ("err",), sample_suffix="")
        reg.gauge("te_queue_size", "Number of requests waiting in the queue.").labels() \
            .set_function(lambda: engine.waiting)
        reg.gauge("te_batch_current_size", "Number of requests in the current batch.").labels() \
            .set_function(lambda: engine.running)
        self.duration = reg.histogram("te_request_duration", "Request duration in seconds.",
                                      _TEI_DURATION_BUCKETS).labels()
        self.queue_duration = reg.histogram("te_request_queue_duration",
                                            "Time spent in the queue, in seconds.",
                                            _TEI_DURATION_BUCKETS).labels()
        self.inference_duration = reg.histogram("te_request_inference_duration",
                                                "Inference time, in seconds.",
                                                _TEI_DURATION_BUCKETS).labels()

    def failure(self, err: str) -> None:
        self._failure.labels(err).inc()
