"""The TEI kind: `/health`, `/info`, `/embed`, `/v1/embeddings` (and TEI's `/embeddings` alias).

TEI's behaviour kept here: a request beyond `--max-concurrent-requests` in flight is refused at
once with 429 "Model is overloaded"; every validation error is a 413 (TEI maps its Validation
error type to PAYLOAD_TOO_LARGE); JSON the server cannot decode is 400 (syntax) or 422 (shape),
as axum answers; `/embed` errors are `{"error", "error_type"}` and `/v1/embeddings` errors are
`{"message", "code", "type"}`, both flat. The `model` field of a request is not checked (TEI
serves one model and ignores it); the response echoes it.

Latency: each request takes one slot of the batch (`--max-num-seqs`, 32 by default); its
inference time is TTFT (which grows with the batch) plus ITL for each input after the first.
An injected error is a 500 with error type "Backend" (a real TEI backend failure is a 424; the
simulator uses 500 so that routers treat it as the server-side failure it is).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from simulator.embeddings import Embedder, to_base64
from simulator.engine import Seq, hang_forever
from simulator.engine_metrics import TeiMetrics
from simulator.errors import (
    ClientDisconnected,
    RequestError,
    tei_error_body,
    tei_openai_error_body,
)
from simulator.faults import Decision
from simulator.httpserver import Exchange, Handler, Request
from simulator.runtime import Runtime
from simulator.textgen import count_words

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def _texts(value: Any, field: str) -> tuple[list[str], bool]:
    """The inputs as texts, and whether the request was a batch; token ids become their words."""
    if isinstance(value, str):
        return [value], False
    if isinstance(value, list):
        if value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [" ".join(str(v) for v in value)], False
        texts = []
        for item in value:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, list) and all(
                    isinstance(v, int) and not isinstance(v, bool) for v in item):
                texts.append(" ".join(str(v) for v in item))
            else:
                raise RequestError(422, f"`{field}` must be a string, a list of strings or of "
                                   "token-id lists")
        return texts, True
    raise RequestError(422, f"`{field}` must be a string, a list of strings or of token-id lists")


class TeiKind:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.settings = settings
        self.metrics = TeiMetrics(runtime.engine)
        self.registry = self.metrics.registry
        self.embedder = Embedder(settings.seed, settings.dims)
        self.in_flight = 0
        self.routes: dict[tuple[str, str], Handler] = {
            ("GET", "/health"): self.health,
            ("GET", "/info"): self.info,
            ("POST", "/embed"): self.embed,
            ("POST", "/v1/embeddings"): self.openai_embeddings,
            ("POST", "/embeddings"): self.openai_embeddings,
        }

    @staticmethod
    def error_body(error: RequestError) -> bytes:
        return tei_error_body(error)

    async def health(self, request: Request, exchange: Exchange) -> None:
        if self.runtime.loaded():
            exchange.send(200, b"")
        else:
            exchange.send(503, tei_error_body(RequestError(503, "unhealthy")))

    async def info(self, request: Request, exchange: Exchange) -> None:
        s = self.settings
        exchange.send(200, orjson.dumps({
            "model_id": s.model, "model_sha": None, "model_dtype": "float16",
            "model_type": {"embedding": {"pooling": "mean"}},
            "max_concurrent_requests": s.max_concurrent_requests,
            "max_input_length": s.max_model_len, "max_batch_tokens": 16384,
            "max_batch_requests": s.batch_size, "max_client_batch_size": s.max_client_batch_size,
            "auto_truncate": False, "tokenization_workers": 1,
            "version": "flotilla-simulator", "sha": None, "docker_label": None,
        }))

    async def embed(self, request: Request, exchange: Exchange) -> None:
        await self._serve(request, exchange, openai=False)

    async def openai_embeddings(self, request: Request, exchange: Exchange) -> None:
        await self._serve(request, exchange, openai=True)

    def _parse(self, body: bytes, openai: bool) -> tuple[dict[str, Any], list[str], bool]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise RequestError(400, f"Failed to parse the request body as JSON: {exc}") from None
        field = "input" if openai else "inputs"
        if not isinstance(data, dict) or field not in data:
            raise RequestError(422, f"Failed to deserialize the JSON body: missing field `{field}`")
        texts, batch = _texts(data[field], field)
        self.metrics.count["batch" if batch else "single"].inc()
        if not texts:
            self.metrics.failure("validation")
            raise RequestError(413, "`inputs` cannot be empty")
        if len(texts) > self.settings.max_client_batch_size:
            self.metrics.failure("batch_size")
            raise RequestError(413, f"batch size {len(texts)} > maximum allowed batch size "
                               f"{self.settings.max_client_batch_size}")
        if openai and data.get("encoding_format", "float") not in ("float", "base64"):
            self.metrics.failure("validation")
            raise RequestError(422, "`encoding_format` must be \"float\" or \"base64\"")
        return data, texts, batch

    async def _serve(self, request: Request, exchange: Exchange, *, openai: bool) -> None:
        runtime = self.runtime
        error_body = tei_openai_error_body if openai else tei_error_body
        runtime.begin_request()
        try:
            if not runtime.loaded():
                raise RequestError(503, "unhealthy")
            data, texts, batch = self._parse(request.body, openai)
            if self.in_flight >= self.settings.max_concurrent_requests:
                self.metrics.failure("overloaded")
                raise RequestError(429, "Model is overloaded")
            decision = runtime.faults.draw()
            if decision is Decision.ERROR:
                self.metrics.failure("backend")
                raise RequestError(500, "Simulated backend failure (injected by the error_rate "
                                   "fault)")
        except RequestError as error:
            runtime.stats.errors += 1
            exchange.send(error.status, error_body(error))
            return
        self.in_flight += 1
        try:
            if decision is Decision.HANG:
                await self._hang()
                return
            vectors = await self._infer(texts, data)
        finally:
            self.in_flight -= 1
        if openai:
            exchange.send(200, self._openai_body(data, texts, vectors))
        else:
            exchange.send(200, orjson.dumps(vectors, option=_NUMPY))
        runtime.stats.completed += 1
        self.metrics.success["batch" if batch else "single"].inc()

    async def _hang(self) -> None:
        stats = self.runtime.stats
        stats.hanging += 1
        try:
            await hang_forever()
        except asyncio.CancelledError:
            stats.cancelled += 1
            raise
        finally:
            stats.hanging -= 1

    async def _infer(self, texts: list[str], data: dict[str, Any]) -> list[Any]:
        runtime = self.runtime
        engine = runtime.engine
        arrived = runtime.clock()
        seq: Seq | None = None
        try:
            seq = await engine.enter()
            started = runtime.clock()
            tokens = sum(max(count_words(t), 1) for t in texts)
            delay = engine.ttft(tokens) + sum(engine.itl() for _ in texts[1:])
            await engine.pause(delay)
        except (asyncio.CancelledError, ClientDisconnected):
            runtime.stats.cancelled += 1
            raise
        finally:
            if seq is not None:
                engine.leave(seq)
        normalize = data.get("normalize", True) is not False
        vectors = [self.embedder.vector(t, normalize=normalize) for t in texts]
        now = runtime.clock()
        self.metrics.queue_duration.observe(seq.queued_s)
        self.metrics.inference_duration.observe(now - started)
        self.metrics.duration.observe(now - arrived)
        return vectors

    def _openai_body(self, data: dict[str, Any], texts: list[str], vectors: list[Any]) -> bytes:
        base64 = data.get("encoding_format") == "base64"
        items = [{"object": "embedding",
                  "embedding": to_base64(v) if base64 else v,
                  "index": i} for i, v in enumerate(vectors)]
        tokens = sum(max(count_words(t), 1) for t in texts)
        model = data.get("model") if isinstance(data.get("model"), str) else self.settings.model
        return orjson.dumps({"object": "list", "data": items, "model": model,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
                            option=_NUMPY)
