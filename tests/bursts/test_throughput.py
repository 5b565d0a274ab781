"""Measured throughput: vLLM token counters read twice from a real simulator while it is busy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import openai

from control_plane.throughput import EngineSample, ThroughputMeter, measure, parse_engine_metrics
from fleet.schemas import WorkerRecord
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess

EXPOSITION = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 1200.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 800.0
"""


def test_counters_are_read_from_the_exposition() -> None:
    sample = parse_engine_metrics(EXPOSITION, 10.0)
    assert sample == EngineSample(10.0, 800.0, 1200.0, 3.0)
    assert parse_engine_metrics("# nothing\n", 10.0) is None  # not a vLLM engine


def test_a_measurement_needs_a_busy_engine_at_both_reads() -> None:
    before = EngineSample(0.0, 1000.0, 5000.0, 4.0)
    after = EngineSample(10.0, 3000.0, 25000.0, 6.0)
    m = measure(before, after)
    assert m is not None
    assert (m.output_tokens_per_s, m.input_tokens_per_s, m.concurrency) == (200.0, 2000.0, 5.0)
    assert measure(before, EngineSample(10.0, 3000.0, 25000.0, 0.0)) is None  # went idle
    assert measure(before, EngineSample(10.0, 10.0, 20.0, 2.0)) is None  # engine restarted
    assert measure(before, EngineSample(10.0, 1000.0, 5000.0, 4.0)) is None  # nothing made


def test_old_measurements_leave_the_window() -> None:
    meter = ThroughputMeter(None, window_s=100.0)  # type: ignore[arg-type]
    meter.record("p", "g6", "w1", EngineSample(0.0, 0.0, 0.0, 1.0))
    meter.record("p", "g6", "w1", EngineSample(10.0, 500.0, 0.0, 1.0))
    assert meter.best("p", "g6", 50.0).output_tokens_per_s == 50.0
    assert meter.best("p", "g6", 200.0) is None
    assert meter.best("p", "other", 50.0) is None


async def test_a_busy_simulator_is_measured(processes: Callable[..., ManagedProcess]) -> None:
    port = free_port()
    sim = processes("simulator", "--port", str(port), "--model", "m", "--ttft-ms", "5",
                    "--itl-ms", "5")
    url = f"http://127.0.0.1:{port}"
    await sim.wait_http(url + "/health", timeout=20)
    worker = WorkerRecord(worker_id="w1", instance_id="i-1", model_id="m", engine="vllm",
                          url=url, agent_url=url, registered_at=0.0, last_heartbeat=0.0,
                          status="ready", pool="p", instance_type="sim-gpu")
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=10)
    stop = asyncio.Event()

    async def load() -> None:
        while not stop.is_set():
            await client.completions.create(model="m", prompt="hello there", max_tokens=16)

    loaders = [asyncio.create_task(load()) for _ in range(6)]
    try:
        async with aiohttp.ClientSession() as http:
            meter = ThroughputMeter(http)
            loop = asyncio.get_running_loop()
            best = None
            # Reads until two in a row found the engine busy (a loaded machine may catch it
            # between requests); bounded.
            for _ in range(20):
                await asyncio.sleep(0.3)
                await meter.sample([(worker, True)], loop.time())
                best = meter.best("p", "sim-gpu", loop.time())
                if best is not None:
                    break
    finally:
        stop.set()
        await asyncio.gather(*loaders)
        await client.close()
    assert best is not None
    # 6 streams of 16 tokens at 5 ms per token: well over one token per second, finite
    assert 1.0 < best.output_tokens_per_s < 1e6
    assert best.throughput().source == "measured"


async def test_a_few_workers_per_instance_type_are_read() -> None:
    reads: list[str] = []

    class Meter(ThroughputMeter):
        async def _read(self, worker: WorkerRecord, now: float) -> EngineSample | None:
            reads.append(worker.worker_id)
            return None

    def worker(i: int, instance_type: str, engine: str = "vllm") -> WorkerRecord:
        return WorkerRecord(worker_id=f"w{i:02d}", instance_id=f"i{i}", model_id="m",
                            engine=engine, url="http://127.0.0.1:1", agent_url="http://x",
                            registered_at=0.0, last_heartbeat=0.0, pool="p",
                            instance_type=instance_type)

    fleet = [(worker(i, "a"), True) for i in range(10)] + [(worker(20, "b"), True),
                                                            (worker(21, "b"), False),
                                                            (worker(22, "b", "tei"), True)]
    await Meter(None).sample(fleet, 0.0)  # type: ignore[arg-type]
    assert reads == ["w00", "w01", "w02", "w20"]
