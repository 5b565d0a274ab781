"""CPU cost of reading an engine's /metrics page: lean parser vs prometheus_client.

The agent reads the engine's page every ENGINE_POLL_INTERVAL_S (and on every drain check). This
compares, on the same vLLM-shaped page (built with prometheus_client the way vLLM builds it, two
engine cores, process metrics included), the CPU time of:
  - lean:   worker_agent.promtext.parse_samples, keeping only the series the vLLM adapter reads
  - client: prometheus_client.parser.text_string_to_metric_families, consuming every family
  - adapter: VllmAdapter.parse_metrics (lean parse + histogram merge), the agent's real path
Run from the repository root:  python scripts/bench/engine_metrics_parse.py [--repeat N]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tests.support.engine_pages import vllm_page  # noqa: E402
from worker_agent.engines.vllm import VllmAdapter  # noqa: E402
from worker_agent.promtext import parse_samples  # noqa: E402


def cpu_per_call(fn, text: str, repeat: int) -> float:
    start = time.process_time()
    for _ in range(repeat):
        fn(text)
    return (time.process_time() - start) / repeat


def consume_client(text: str) -> int:
    n = 0
    for family in text_string_to_metric_families(text):
        n += len(family.samples)
    return n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    page = vllm_page(engines=2, running=3, waiting=1, ttft=[0.05, 0.2, 0.7] * 50,
                     e2e=[1.1, 2.4, 9.0] * 50, success={"stop": 140, "length": 10})
    adapter = VllmAdapter("http://127.0.0.1:1", "m", http=None)  # type: ignore[arg-type]
    wanted = VllmAdapter.metric_names
    results = {
        "lean": cpu_per_call(lambda t: parse_samples(t, wanted), page, args.repeat),
        "client": cpu_per_call(consume_client, page, args.repeat),
        "adapter": cpu_per_call(adapter.parse_metrics, page, args.repeat),
    }
    print(f"page: {len(page)} bytes, {page.count(chr(10))} lines; repeat {args.repeat}")
    for name, seconds in results.items():
        print(f"  {name:8s} {seconds * 1e6:9.0f} us CPU per page")
    print(f"  client / lean = {results['client'] / results['lean']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
