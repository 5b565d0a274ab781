"""/metrics of both kinds passes `promtool check metrics` (errors fail; lint warnings do not).

promtool warns about names we keep on purpose: vLLM's contain ':' and TEI's counters have no
`_total` - they are the engines' real names, which the agent and dashboards read. A parse error
makes promtool exit 1; lint problems alone exit 3.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.simulator.conftest import INSTANT

VLLM_NAMES = ("vllm:num_requests_running", "vllm:num_requests_waiting",
              "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc",
              "vllm:time_to_first_token_seconds_bucket", "vllm:time_per_output_token_seconds",
              "vllm:e2e_request_latency_seconds_count", "vllm:prompt_tokens_total",
              "vllm:generation_tokens_total", "vllm:request_success_total")
TEI_NAMES = ("te_request_count", "te_request_success", "te_queue_size", "te_batch_current_size",
             "te_request_duration_bucket")


def promtool_errors(promtool: str, text: str) -> list[str]:
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                            capture_output=True, timeout=30)
    output = (result.stdout + result.stderr).decode()
    lint_only = result.returncode in (0, 3) and "error" not in output.lower()
    return [] if lint_only else [f"exit {result.returncode}: {output}"]


@pytest.mark.parametrize("kind, path, body, names", [
    ("vllm", "/v1/chat/completions",
     {"messages": [{"role": "user", "content": "hi"}], "stream": True}, VLLM_NAMES),
    ("tei", "/embed", {"inputs": ["a", "b"]}, TEI_NAMES),
])
async def test_metrics_pass_promtool_with_the_engine_names(start_sim, promtool: str, kind: str,
                                                           path: str, body: dict,
                                                           names: tuple[str, ...]) -> None:
    sim = await start_sim("--kind", kind, *INSTANT, "--model", 'odd "name"\\x')
    assert sim.post(path, body).status_code == 200
    response = sim.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert promtool_errors(promtool, response.text) == []
    for name in names:
        assert name in response.text
