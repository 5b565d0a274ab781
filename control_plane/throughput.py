"""Measured throughput: tokens/s the pools' engines really produced, from vLLM's own counters.

Every `CONTROL_PLANE_THROUGHPUT_SAMPLE_INTERVAL_S` the control plane reads `<engine url>/metrics`
of each ready vLLM worker of a pool (`vllm:generation_tokens_total`, `vllm:prompt_tokens_total`,
`vllm:num_requests_running`). Between two reads of one worker that was busy at both (requests
running), the counters' increase over the elapsed time is one measurement of that instance type's
throughput, at the concurrency it was serving. An estimate uses the best measurement of the last
`window_s` for the pool's type and says at what concurrency it was seen: throughput grows with the
batch, so a measurement at low load is a floor of what the instance can do, never a guess above it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from control_plane.pricing import Throughput
from fleet.schemas import WorkerRecord

log = logging.getLogger("flotilla.control_plane.throughput")

MAX_METRICS_BYTES = 1 << 20
# Workers read per (pool, instance type): a few measure the type as well as all of them, and keep
# the cost flat on a 1,000-worker fleet (the same ones are read each time, sorted by id).
WORKERS_PER_TYPE = 3


@dataclass(frozen=True, slots=True)
class EngineSample:
    at: float
    generation_tokens: float
    prompt_tokens: float
    running: float


@dataclass(frozen=True, slots=True)
class Measurement:
    at: float
    output_tokens_per_s: float
    input_tokens_per_s: float | None
    concurrency: float  # requests running, mean of the two reads
    seconds: float

    def throughput(self) -> Throughput:
        return Throughput(self.output_tokens_per_s, self.input_tokens_per_s, source="measured")


def parse_engine_metrics(text: str, at: float) -> EngineSample | None:
    totals = {"vllm:generation_tokens": 0.0, "vllm:prompt_tokens": 0.0,
              "vllm:num_requests_running": 0.0}
    seen = set()
    for family in text_string_to_metric_families(text):
        if family.name not in totals:
            continue
        for sample in family.samples:
            if sample.name in (family.name, f"{family.name}_total"):
                totals[family.name] += sample.value
                seen.add(family.name)
    if "vllm:generation_tokens" not in seen:
        return None
    return EngineSample(at, totals["vllm:generation_tokens"], totals["vllm:prompt_tokens"],
                        totals["vllm:num_requests_running"])


def measure(previous: EngineSample, current: EngineSample) -> Measurement | None:
    """One measurement from two reads, or None when the engine was not busy at both, restarted
    (counters went back) or produced nothing."""
    seconds = current.at - previous.at
    generated = current.generation_tokens - previous.generation_tokens
    prompt = current.prompt_tokens - previous.prompt_tokens
    if seconds <= 0 or generated <= 0 or prompt < 0:
        return None
    if previous.running <= 0 or current.running <= 0:
        return None
    return Measurement(current.at, generated / seconds, prompt / seconds if prompt else None,
                       (previous.running + current.running) / 2, seconds)


class ThroughputMeter:
    def __init__(self, http: aiohttp.ClientSession, *, window_s: float = 3600.0,
                 timeout_s: float = 3.0) -> None:
        self.http = http
        self.window_s = window_s
        self.timeout_s = timeout_s
        self._last: dict[str, EngineSample] = {}
        self._measured: dict[tuple[str, str], list[Measurement]] = {}

    def best(self, pool: str, instance_type: str, now: float) -> Measurement | None:
        kept = [m for m in self._measured.get((pool, instance_type), [])
                if now - m.at <= self.window_s]
        self._measured[(pool, instance_type)] = kept
        return max(kept, key=lambda m: m.output_tokens_per_s, default=None)

    def record(self, pool: str, instance_type: str, worker_id: str, sample: EngineSample
               ) -> None:
        previous = self._last.get(worker_id)
        self._last[worker_id] = sample
        if previous is None:
            return
        measurement = measure(previous, sample)
        if measurement is not None:
            self._measured.setdefault((pool, instance_type), []).append(measurement)

    async def sample(self, workers: Iterable[tuple[WorkerRecord, bool]], now: float) -> None:
        """Read up to `WORKERS_PER_TYPE` ready vLLM workers of each (pool, instance type)."""
        per_type: dict[tuple[str, str], list[WorkerRecord]] = {}
        for worker, ready in sorted(workers, key=lambda item: item[0].worker_id):
            if ready and worker.engine == "vllm" and worker.pool and worker.instance_type:
                group = per_type.setdefault((worker.pool, worker.instance_type), [])
                if len(group) < WORKERS_PER_TYPE:
                    group.append(worker)
        chosen = [w for group in per_type.values() for w in group]
        live = {w.worker_id for w in chosen}
        for gone in [w for w in self._last if w not in live]:
            del self._last[gone]
        results = await asyncio.gather(*(self._read(w, now) for w in chosen))
        for worker, sample in zip(chosen, results, strict=True):
            if sample is not None:
                assert worker.pool is not None and worker.instance_type is not None
                self.record(worker.pool, worker.instance_type, worker.worker_id, sample)

    async def _read(self, worker: WorkerRecord, now: float) -> EngineSample | None:
        url = worker.url.rstrip("/") + "/metrics"
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self.http.get(url, allow_redirects=False) as response:
                    if response.status != 200:
                        return None
                    body = await response.content.read(MAX_METRICS_BYTES)
            return parse_engine_metrics(body.decode(errors="replace"), now)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.debug("reading %s failed: %s", url, exc)
            return None
