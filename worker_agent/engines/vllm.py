"""vLLM's OpenAI-compatible server (`vllm serve`).

Readiness: `GET /health` is 200 once the engine core is up; `GET /v1/models` lists the served
model names (`--served-model-name`, else the model path). Warm-up: a one-token text completion.
Metrics (V1 engine, one series per engine core, label `model_name`): gauges
`vllm:num_requests_running`, `vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc` (0..1; the
deprecated `vllm:gpu_cache_usage_perc` is read when the new name is absent, for older releases),
counter `vllm:request_success_total` (by finish reason), histograms
`vllm:time_to_first_token_seconds` and `vllm:e2e_request_latency_seconds`.
"""

from __future__ import annotations

from worker_agent.engines.base import EngineAdapter, EngineSample, LaunchSpec
from worker_agent.errors import EngineError
from worker_agent.histogram import Histogram
from worker_agent.promtext import mean, parse_samples, total

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_USAGE = "vllm:kv_cache_usage_perc"
KV_USAGE_DEPRECATED = "vllm:gpu_cache_usage_perc"
SUCCESS = "vllm:request_success_total"
TTFT = "vllm:time_to_first_token_seconds"
E2E = "vllm:e2e_request_latency_seconds"


def _histogram_parts(name: str) -> set[str]:
    return {f"{name}_bucket", f"{name}_count", f"{name}_sum"}


class VllmAdapter(EngineAdapter, name="vllm"):
    metric_names = frozenset({RUNNING, WAITING, KV_USAGE, KV_USAGE_DEPRECATED, SUCCESS,
                              *_histogram_parts(TTFT), *_histogram_parts(E2E)})

    async def list_models(self) -> list[str]:
        body = await self._json("GET", "/v1/models")
        try:
            return [str(item["id"]) for item in body["data"]]
        except (KeyError, TypeError):
            raise EngineError("GET /v1/models answered an unexpected shape") from None

    async def warm_up(self) -> None:
        # A text completion works for every generative model, with or without a chat template.
        await self._json("POST", "/v1/completions", json={
            "model": self.model_id, "prompt": "Hello", "max_tokens": 1, "temperature": 0,
        }, timeout_s=self.warmup_timeout_s)

    def parse_metrics(self, text: str) -> EngineSample:
        samples = parse_samples(text, self.metric_names)
        kv = mean(samples, KV_USAGE)
        if kv is None:
            kv = mean(samples, KV_USAGE_DEPRECATED)
        return EngineSample(
            running=total(samples, RUNNING),
            waiting=total(samples, WAITING),
            kv_cache_usage=kv,
            completed=total(samples, SUCCESS),
            ttft=Histogram.from_samples(samples, TTFT),
            e2e=Histogram.from_samples(samples, E2E),
        )

    def command(self, launch: LaunchSpec) -> list[str]:
        argv = ["vllm", "serve", launch.model_id, "--host", launch.host,
                "--port", str(launch.port)]
        if launch.tensor_parallel_size is not None:
            argv += ["--tensor-parallel-size", str(launch.tensor_parallel_size)]
        if launch.gpu_memory_utilization is not None:
            argv += ["--gpu-memory-utilization", str(launch.gpu_memory_utilization)]
        return argv
