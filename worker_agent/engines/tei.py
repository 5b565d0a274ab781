"""Hugging Face text-embeddings-inference (`text-embeddings-router`).

Readiness: `GET /health` is 200 once the model is loaded; `GET /info` names the model
(`model_id`); engines that only speak OpenAI's `GET /v1/models` are read as a fallback. Warm-up: a
one-input `POST /embed`. Metrics: gauge `te_queue_size` (queued requests), counters
`te_request_count`, `te_request_success` and `te_request_failure` (by method or error kind), and
the `te_request_duration` histogram (seconds). Releases that export `te_batch_current_size` give
`running` directly; current ones have no running gauge, so requests counted in but neither
succeeded nor failed yet (minus the queued ones) are taken as running. TEI has no TTFT.
"""

from __future__ import annotations

from worker_agent.engines.base import EngineAdapter, EngineSample, LaunchSpec
from worker_agent.errors import EngineError
from worker_agent.histogram import Histogram
from worker_agent.promtext import parse_samples, total

QUEUE = "te_queue_size"
BATCH = "te_batch_current_size"
COUNT = "te_request_count"
SUCCESS = "te_request_success"
FAILURE = "te_request_failure"
DURATION = "te_request_duration"


class TeiAdapter(EngineAdapter, name="tei"):
    metric_names = frozenset({QUEUE, BATCH, COUNT, SUCCESS, FAILURE, f"{DURATION}_bucket",
                              f"{DURATION}_count", f"{DURATION}_sum"})

    async def list_models(self) -> list[str]:
        try:
            info = await self._json("GET", "/info")
        except EngineError as exc:
            if exc.status != 404:
                raise
            body = await self._json("GET", "/v1/models")
            try:
                return [str(item["id"]) for item in body["data"]]
            except (KeyError, TypeError):
                raise EngineError("GET /v1/models answered an unexpected shape") from None
        if not isinstance(info, dict) or not isinstance(info.get("model_id"), str):
            raise EngineError("GET /info has no model_id")
        names = [info["model_id"]]
        served = info.get("served_model_name")
        if isinstance(served, str) and served not in names:
            names.append(served)
        return names

    async def warm_up(self) -> None:
        await self._json("POST", "/embed", json={"inputs": "Hello"},
                         timeout_s=self.warmup_timeout_s)

    def parse_metrics(self, text: str) -> EngineSample:
        samples = parse_samples(text, self.metric_names)
        waiting = total(samples, QUEUE)
        started = total(samples, COUNT)
        finished = (total(samples, SUCCESS) or 0.0) + (total(samples, FAILURE) or 0.0)
        running = total(samples, BATCH)
        if running is None and started is not None:
            running = max(0.0, started - finished - (waiting or 0.0))
        return EngineSample(
            running=running,
            waiting=waiting,
            completed=total(samples, SUCCESS),
            e2e=Histogram.from_samples(samples, DURATION),
        )

    def command(self, launch: LaunchSpec) -> list[str]:
        # TEI has no tensor parallelism or memory fraction flags: one GPU per router process.
        return ["text-embeddings-router", "--model-id", launch.model_id,
                "--hostname", launch.host, "--port", str(launch.port)]
