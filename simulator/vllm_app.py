"""The vLLM kind: `/health`, `/v1/models`, `/v1/chat/completions`, `/v1/completions`.

One inference request goes:

    count it (and maybe crash) -> 503 while loading -> validate (400/404) -> draw a fault
    (500 | hang | serve) -> compute the text -> enter the batch (FIFO wait when full) -> TTFT ->
    tokens with inter-token pauses -> leave the batch

Like vLLM, nothing is sent before the first token: a queued request has no status line yet, so a
router can still fail it over. A client that goes away anywhere on that path is counted as
`cancelled` (and `finished_reason="abort"` in the metrics) and frees its batch slot at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson

from simulator.engine import Seq, hang_forever
from simulator.engine_metrics import VllmMetrics
from simulator.errors import ClientDisconnected, RequestError, vllm_error_body
from simulator.faults import Decision
from simulator.httpserver import Exchange, Handler, Request
from simulator.runtime import Runtime
from simulator.textgen import Completion, TextGenerator
from simulator.vllm_protocol import (
    DONE_EVENT,
    GenerationRequest,
    ResponseShape,
    parse_chat,
    parse_completion,
)

Parser = Callable[[bytes, str, int], GenerationRequest]


class VllmKind:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.model = settings.model
        self.max_model_len = settings.max_model_len
        self.metrics = VllmMetrics(runtime.engine, settings.model, settings.max_model_len)
        self.registry = self.metrics.registry
        self.text = TextGenerator(settings.seed, settings.output_tokens)
        self.created = int(time.time())
        self.routes: dict[tuple[str, str], Handler] = {
            ("GET", "/health"): self.health,
            ("GET", "/v1/models"): self.models,
            ("POST", "/v1/chat/completions"): self.chat_completions,
            ("POST", "/v1/completions"): self.completions,
        }

    @staticmethod
    def error_body(error: RequestError) -> bytes:
        return vllm_error_body(error)

    async def health(self, request: Request, exchange: Exchange) -> None:
        if self.runtime.loaded():
            exchange.send(200, b"")
        else:
            exchange.send(503, vllm_error_body(RequestError(503, "The model is still loading.")))

    async def models(self, request: Request, exchange: Exchange) -> None:
        if not self.runtime.loaded():
            exchange.send(503, vllm_error_body(RequestError(503, "The model is still loading.")))
            return
        exchange.send(200, orjson.dumps({"object": "list", "data": [{
            "id": self.model, "object": "model", "created": self.created, "owned_by": "vllm",
            "root": self.model, "parent": None, "max_model_len": self.max_model_len,
        }]}))

    async def chat_completions(self, request: Request, exchange: Exchange) -> None:
        await self._generate(request, exchange, parse_chat)

    async def completions(self, request: Request, exchange: Exchange) -> None:
        await self._generate(request, exchange, parse_completion)

    async def _generate(self, request: Request, exchange: Exchange, parse: Parser) -> None:
        runtime = self.runtime
        runtime.begin_request()
        try:
            if not runtime.loaded():
                raise RequestError(503, "The model is still loading.")
            generation = parse(request.body, self.model, self.max_model_len)
            decision = runtime.faults.draw()
            if decision is Decision.ERROR:
                raise RequestError(500, "Simulated engine failure (injected by the error_rate "
                                   "fault).")
        except RequestError as error:
            runtime.stats.errors += 1
            exchange.send(error.status, vllm_error_body(error))
            return
        if decision is Decision.HANG:
            await self._hang()
            return
        if generation.chat:
            assert generation.messages is not None
            completion = self.text.chat(generation.messages,
                                        continue_final=generation.continue_final,
                                        max_tokens=generation.max_tokens,
                                        ignore_eos=generation.ignore_eos)
        else:
            completion = self.text.completion(generation.prompt,
                                              max_tokens=generation.max_tokens,
                                              ignore_eos=generation.ignore_eos)
        shape = ResponseShape(generation)
        if generation.stream:
            await self._stream(exchange, generation, completion, shape)
        else:
            await self._whole(exchange, generation, completion, shape)

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

    def _cancelled(self, seq: Seq | None, arrived: float, prompt_tokens: int,
                   generated: int) -> None:
        self.runtime.stats.cancelled += 1
        queued = seq.queued_s if seq is not None else self.runtime.clock() - arrived
        self.metrics.finished("abort", prompt_tokens=prompt_tokens, generated=generated,
                              e2e_s=self.runtime.clock() - arrived, queued_s=queued)

    def _done(self, seq: Seq, reason: str, prompt_tokens: int, generated: int,
              first_token_at: float) -> None:
        now = self.runtime.clock()
        self.runtime.stats.completed += 1
        self.metrics.ttft.observe(first_token_at - seq.arrived)
        if generated > 1:
            self.metrics.tpot.observe((now - first_token_at) / (generated - 1))
        self.metrics.finished(reason, prompt_tokens=prompt_tokens, generated=generated,
                              e2e_s=now - seq.arrived, queued_s=seq.queued_s)

    async def _whole(self, exchange: Exchange, generation: GenerationRequest,
                     completion: Completion, shape: ResponseShape) -> None:
        engine = self.runtime.engine
        arrived = self.runtime.clock()
        seq: Seq | None = None
        try:
            seq = await engine.enter()
            await engine.pause(engine.ttft(generation.prompt_tokens))
            first_token_at = self.runtime.clock()
            if engine.model.itl_s:
                for _ in range(len(completion.pieces) - 1):
                    await engine.pause(engine.itl())
            exchange.send(200, shape.whole(completion, generation.prompt_tokens))
        except (asyncio.CancelledError, ClientDisconnected):
            self._cancelled(seq, arrived, generation.prompt_tokens, 0)
            raise
        finally:
            if seq is not None:
                engine.leave(seq)
        self._done(seq, completion.finish_reason, generation.prompt_tokens,
                   len(completion.pieces), first_token_at)

    async def _stream(self, exchange: Exchange, generation: GenerationRequest,
                      completion: Completion, shape: ResponseShape) -> None:
        runtime = self.runtime
        engine = runtime.engine
        arrived = runtime.clock()
        seq: Seq | None = None
        generated = 0
        pieces = completion.pieces
        last = len(pieces) - 1
        abort_after = runtime.faults.config.abort_stream_after_tokens
        # The abort fault cuts streams that would be longer than N tokens, after N tokens.
        cut = abort_after is not None and abort_after < max(len(pieces), 1)
        if cut:
            pieces = pieces[:abort_after]
        paced = engine.model.itl_s > 0
        try:
            seq = await engine.enter()
            await engine.pause(engine.ttft(generation.prompt_tokens))
            first_token_at = runtime.clock()
            exchange.start_stream()
            if shape.chat:
                exchange.write(shape.role_event())
            for index, piece in enumerate(pieces):
                if paced and index:
                    await engine.pause(engine.itl())
                if index == last:
                    exchange.write(shape.last_token_event(piece, completion.finish_reason))
                else:
                    exchange.write(shape.token_event(piece))
                generated += 1
                if exchange.must_drain:
                    await exchange.drain()
            if cut:
                # A dying engine: the connection closes mid-stream, no [DONE].
                runtime.stats.aborted += 1
                exchange.abort()
                return
            if not pieces:
                exchange.write(shape.last_token_event("", completion.finish_reason))
            if generation.include_usage:
                exchange.write(shape.usage_event(generation.prompt_tokens, generated))
            exchange.write(DONE_EVENT)
            exchange.end_stream()
        except (asyncio.CancelledError, ClientDisconnected):
            self._cancelled(seq, arrived, generation.prompt_tokens, generated)
            raise
        finally:
            if seq is not None:
                engine.leave(seq)
        self._done(seq, completion.finish_reason, generation.prompt_tokens, generated,
                   first_token_at)
