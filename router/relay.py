"""One attempt: send the request to one endpoint and relay its answer to the client.

    before the first byte reaches the client      after it
    connect error, timeout, 5xx, broken body  ──► raise UpstreamError: the failover loop retries
    4xx                                       ──► relayed (normalised), never retried
    2xx non-streamed                          ──► relayed whole (content-length)
    2xx text/event-stream                     ──► headers and the first complete SSE event(s)
                                                  are sent only once they have arrived (so a
                                                  worker dying before its first token is still
                                                  retried elsewhere); then each chunk as it
                                                  arrives, cut at event boundaries
                                                  stream breaks (error, idle timeout, end
                                                  without [DONE]) ──► one SSE error event in
                                                  OpenAI's shape, then the stream closes

Events are relayed as the upstream sent them (bytes, never re-encoded). Only an incomplete event
at the end of a chunk is held back until its end arrives, so that an error event after a break
always starts on an event boundary (a client must never see half an event). The transcript keeps
what was relayed (usage, [DONE], and the text per choice a continuation would need).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time

import orjson

from router.balancing import Endpoint
from router.call import Call, ClientGone
from router.errors import (
    UpstreamBroken,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
    normalise_error_body,
)
from router.guard import CLIENT_GONE
from router.resume import Splicer
from router.resuming import StreamResumer
from router.routing import Target
from router.runtime import RouterRuntime
from router.transcript import StreamTranscript
from router.upstream import UpstreamReply

log = logging.getLogger("router.relay")

_PROMPT_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION_TOKENS = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')
STREAM_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"),
                   (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


def _boundary(data: bytes) -> int:
    """Length of the longest prefix of `data` made of complete SSE events (0: none)."""
    cut = data.rfind(b"\n\n")
    if cut >= 0:
        return cut + 2
    cut = data.rfind(b"\r\n\r\n")
    return cut + 4 if cut >= 0 else 0


def usage_of_body(body: bytes) -> tuple[int, int] | None:
    """(prompt, completion) tokens from a JSON response's `usage`, without decoding it all
    (embedding responses are large)."""
    start = body.rfind(b'"usage"')
    if start < 0:
        return None
    prompt = _PROMPT_TOKENS.search(body, start)
    if prompt is None:
        return None
    completion = _COMPLETION_TOKENS.search(body, start)
    return int(prompt.group(1)), int(completion.group(1)) if completion else 0


def stream_error_frame(message: str, code: str) -> bytes:
    payload = {"error": {"message": message, "type": "server_error", "param": None,
                         "code": code}}
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def headers_for(endpoint: Endpoint, target: Target, call: Call) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "x-request-id": call.request_id}
    if target.api_key_env:
        secret = os.environ.get(target.api_key_env)  # read at call time: rotation needs no restart
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
    return headers


class Exchange:
    """Runs attempts for a runtime; one instance per app."""

    headers_for = staticmethod(headers_for)

    def __init__(self, rt: RouterRuntime) -> None:
        self.rt = rt
        self._loop: asyncio.AbstractEventLoop | None = None
        self.resumer = StreamResumer(rt, self)

    async def attempt(self, call: Call, target: Target, endpoint: Endpoint) -> None:
        """One attempt; returns once the response is relayed, raises UpstreamError to retry."""
        rt = self.rt
        settings = rt.settings
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        breaker = rt.breakers.get(endpoint.key)
        request = call.request
        url = (endpoint.base_url + request.path if endpoint.is_upstream
               else endpoint.base_url + "/v1" + request.path)
        body = request.body_for(target.model)
        guard = call.guard
        response: UpstreamReply | None = None
        rt.inflight.start(endpoint.key)
        rt.policy.on_start(endpoint)
        waited_from = loop.time()
        try:
            try:
                guard.first_byte(settings.first_byte_timeout_s)
                response = await rt.upstream.open(url, body, headers_for(endpoint, target, call))
                # A whole (non-streamed) body arrives right after its headers: the first-byte
                # deadline still in force bounds it (re-arming a timer per request costs more).
                if response.status >= 500:
                    data = await response.read_all()
                    raise UpstreamStatusError(response.status, data)
                if response.status >= 400 or not response.is_event_stream:
                    data = await response.read_all()
                    first = pending = b""
                else:
                    first, pending = await self.first_events(response)
            except asyncio.CancelledError:
                reason = guard.consume()
                if reason is None:
                    raise
                if reason == CLIENT_GONE:
                    raise ClientGone() from None
                raise UpstreamTimeout(f"{reason.replace('_', ' ')} from {target.label}") from None
            finally:
                call.timing.upstream_s += loop.time() - waited_from
            breaker.record_success()
            call.target = target.label
            if response.is_event_stream and response.status < 400:
                await self._relay_stream(call, target, endpoint, response, first, pending)
            else:
                await self._relay_whole(call, target, response, data)
        except UpstreamError as exc:
            guard.disarm()  # no timer may fire during the backoff before the next attempt
            breaker.record_failure(time.monotonic())
            if response is not None:
                response.close()
            log.warning("attempt on %s failed: %s", endpoint.key, exc.message,
                        extra={"worker_id": endpoint.key, "target": target.label})
            raise
        except BaseException:
            breaker.record_abandoned()
            if response is not None:
                response.close()
            raise
        finally:
            rt.inflight.finish(endpoint.key)
            rt.policy.on_finish(endpoint)

    async def first_events(self, response: UpstreamReply,
                           pending: bytes = b"") -> tuple[bytes, bytes]:
        """The first complete SSE event(s) and the incomplete rest after them."""
        while True:
            chunk = await response.read_chunk()
            if not chunk:
                raise UpstreamBroken("stream ended before its first event")
            data = pending + chunk if pending else chunk
            cut = _boundary(data)
            if cut:
                return data[:cut], data[cut:]
            pending = data

    async def _relay_whole(self, call: Call, target: Target, response: UpstreamReply,
                           data: bytes) -> None:
        status = response.status
        if status >= 400:
            data = normalise_error_body(status, data)
            content_type = b"application/json"
        else:
            content_type = response.content_type.encode("latin-1")
        headers = [(b"content-type", content_type),
                   (b"content-length", str(len(data)).encode()),
                   (b"x-flotilla-target", target.label.encode()), *response.relay_headers(),
                   *call.extra_headers]
        response.release()
        call.status = status
        call.guard.close()
        await call.send({"type": "http.response.start", "status": status, "headers": headers})
        await call.send({"type": "http.response.body", "body": data, "more_body": False})
        if status < 400:
            self._account(call, usage_of_body(data), estimated=False)
            if call.cache is not None and status == 200:
                await self.rt.cache.save(call.cache, call.request.model, stream=False,
                                         content_type=content_type, target=target.label,
                                         body=data)

    async def _relay_stream(self, call: Call, target: Target, endpoint: Endpoint,
                            response: UpstreamReply, first: bytes, pending: bytes) -> None:
        send = call.send
        guard = call.guard
        settings = self.rt.settings
        transcript = StreamTranscript()
        headers = [*STREAM_HEADERS, (b"x-flotilla-target", target.label.encode()),
                   *response.relay_headers(), *call.extra_headers]
        call.status = response.status
        guard.idle(settings.idle_timeout_s)
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": first, "more_body": True})
        call.ttft_s = time.perf_counter() - call.timing.started
        transcript.add(first)
        problem = await self.pump(call, endpoint, response, pending, transcript, None)
        if problem is None:
            response.release()
        else:
            response.close()
            self.stream_broke(endpoint, problem, transcript)
            problem = await self.resumer.resume(call, target, endpoint, transcript, problem)
        guard.close()
        if problem is not None:
            self.rt.metrics.stream_errors.labels(
                "timeout" if "silent" in problem else "broken").inc()
            await send({"type": "http.response.body", "more_body": False,
                        "body": stream_error_frame(
                            f"The response stream was interrupted: {problem}. Retry the request.",
                            "stream_interrupted")})
        else:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        self._account_stream(call, transcript)
        if problem is None and call.cache is not None and not call.resumed:
            await self._cache_stream(call, target, transcript)

    async def _cache_stream(self, call: Call, target: Target,
                            transcript: StreamTranscript) -> None:
        """Keep a stream that came whole from one worker (never a partial or spliced one)."""
        if not transcript.complete or call.cache is None:
            return
        body = transcript.raw()
        if b'data: {"error"' in body or b'"object":"error"' in body:
            return
        await self.rt.cache.save(call.cache, call.request.model, stream=True,
                                 content_type=STREAM_HEADERS[0][1], target=target.label,
                                 body=body)

    async def pump(self, call: Call, endpoint: Endpoint, response: UpstreamReply,
                    pending: bytes, transcript: StreamTranscript,
                    splicer: Splicer | None) -> str | None:
        """Relay chunks, cut at event boundaries, to the end: None, or what broke the stream."""
        send = call.send
        guard = call.guard
        try:
            while True:
                chunk = await response.read_chunk()
                if not chunk:
                    break
                data = pending + chunk if pending else chunk
                cut = _boundary(data)
                if cut == len(data):
                    pending = b""
                elif cut:
                    data, pending = data[:cut], data[cut:]
                else:
                    pending = data
                    continue
                guard.touch()
                if splicer is not None:
                    data = splicer.rewrite(data)
                    if not data:
                        continue
                await send({"type": "http.response.body", "body": data, "more_body": True})
                transcript.add(data)
        except UpstreamBroken as exc:
            return f"the worker's stream broke off ({exc.message})"
        except asyncio.CancelledError:
            reason = guard.consume()
            if reason is None:
                raise
            if reason == CLIENT_GONE:
                response.close()
                self.rt.breakers.get(endpoint.key).record_abandoned()
                raise ClientGone() from None
            return f"the worker went silent ({reason.replace('_', ' ')})"
        if pending.strip():
            return "the worker's stream ended in the middle of an event"
        if not transcript.ended_with_done():
            return "the worker's stream ended before [DONE]"
        return None

    def stream_broke(self, endpoint: Endpoint, problem: str,
                      transcript: StreamTranscript) -> None:
        self.rt.breakers.get(endpoint.key).record_failure(time.monotonic())
        log.warning("stream from %s interrupted: %s", endpoint.key, problem,
                    extra={"worker_id": endpoint.key, "relayed_events": transcript.events})

    def _account_stream(self, call: Call, transcript: StreamTranscript) -> None:
        usage = transcript.usage() if call.request.include_usage else None
        if usage is not None:
            prompt = usage.get("prompt_tokens")
            completion = usage.get("completion_tokens")
            if isinstance(prompt, int) and isinstance(completion, int):
                self._account(call, (prompt, completion), estimated=False)
                return
        # No usage requested: about one event per token, and ~4 bytes of body per prompt token.
        estimate = (len(call.request.body) // 4, max(0, transcript.events - 2))
        self._account(call, estimate, estimated=True)

    def _account(self, call: Call, usage: tuple[int, int] | None, *, estimated: bool) -> None:
        if usage is None:
            return
        prompt, completion = usage
        if call.principal is not None:
            self.rt.limiter.record_usage(call.principal, prompt, completion, estimated=estimated)
        self.rt.metrics.count_tokens(call.request.model, prompt, completion, estimated)
