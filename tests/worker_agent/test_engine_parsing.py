"""Engine adapters turn each engine's real metric names into the same EngineSample."""

from __future__ import annotations

import pytest

from tests.support.engine_pages import tei_page, vllm_page
from worker_agent.engines import LaunchSpec, engine_names, make_adapter
from worker_agent.engines.base import EngineAdapter
from worker_agent.errors import EngineError


def adapter(name: str) -> EngineAdapter:
    return make_adapter(name, "http://127.0.0.1:9", "m", http=None)


def test_vllm_sums_engine_cores_and_finish_reasons() -> None:
    sample = adapter("vllm").parse_metrics(vllm_page(
        engines=2, running=3, waiting=1, ttft=[0.03, 0.3], e2e=[2.0],
        success={"stop": 5, "length": 2}))
    assert (sample.running, sample.waiting) == (6.0, 2.0)
    assert sample.completed == 7.0
    assert sample.ttft is not None and sample.ttft.observations == 2
    assert sample.e2e is not None and sample.e2e.observations == 1


def test_vllm_kv_usage_prefers_the_new_name_and_falls_back_to_the_deprecated_one() -> None:
    both = adapter("vllm").parse_metrics(vllm_page(kv_cache_usage=0.4,
                                                   deprecated_kv_cache_usage=0.9))
    assert both.kv_cache_usage == pytest.approx(0.4)
    old_only = adapter("vllm").parse_metrics(vllm_page(kv_cache_usage=None,
                                                       deprecated_kv_cache_usage=0.7))
    assert old_only.kv_cache_usage == pytest.approx(0.7)
    neither = adapter("vllm").parse_metrics(vllm_page(kv_cache_usage=None))
    assert neither.kv_cache_usage is None


def test_tei_in_flight_is_started_minus_finished_minus_queued() -> None:
    sample = adapter("tei").parse_metrics(tei_page(queue=2, requests=10, successes=5,
                                                   failures={"overloaded": 1},
                                                   durations=[0.01] * 5))
    assert sample.waiting == 2.0
    assert sample.running == 2.0  # 10 started, 6 finished, 2 of the 4 left are queued
    assert sample.completed == 5.0
    assert sample.ttft is None and sample.e2e is not None


def test_tei_releases_with_a_batch_gauge_report_it_as_running() -> None:
    page = tei_page(queue=1, requests=10, successes=2) + "te_batch_current_size 4\n"
    sample = adapter("tei").parse_metrics(page)
    assert (sample.running, sample.waiting) == (4.0, 1.0)


def test_tei_without_counters_reports_unknown_running() -> None:
    sample = adapter("tei").parse_metrics("te_queue_size 0\n")
    assert sample.running is None and sample.waiting == 0.0


def test_adapters_are_registered_by_name() -> None:
    assert {"vllm", "tei"} <= set(engine_names())
    with pytest.raises(EngineError, match="unknown engine 'sglang'"):
        make_adapter("sglang", "http://127.0.0.1:9", "m", http=None)


def test_a_new_engine_is_one_subclass_registered_by_name() -> None:
    class EchoAdapter(EngineAdapter, name="echo-test-only"):
        async def list_models(self) -> list[str]:
            return [self.model_id]

        async def warm_up(self) -> None:
            return None

        def parse_metrics(self, text: str):  # type: ignore[no-untyped-def]
            raise ValueError("no metrics")

        def command(self, launch: LaunchSpec) -> list[str]:
            return ["echo", launch.model_id]

    assert "echo-test-only" in engine_names()
    assert isinstance(make_adapter("echo-test-only", "http://h:1", "m", http=None), EchoAdapter)
    with pytest.raises(TypeError, match="registered twice"):
        type("Again", (EchoAdapter,), {}, name="echo-test-only")


def test_supervisor_command_lines_come_from_the_spec_variables() -> None:
    launch = LaunchSpec("org/model", "0.0.0.0", 8000, tensor_parallel_size=2,
                        gpu_memory_utilization=0.85)
    assert adapter("vllm").command(launch) == [
        "vllm", "serve", "org/model", "--host", "0.0.0.0", "--port", "8000",
        "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.85"]
    assert adapter("tei").command(launch) == [
        "text-embeddings-router", "--model-id", "org/model", "--hostname", "0.0.0.0",
        "--port", "8000"]
    assert adapter("vllm").command(LaunchSpec("m", "127.0.0.1", 9)) == [
        "vllm", "serve", "m", "--host", "127.0.0.1", "--port", "9"]
