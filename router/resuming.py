"""Resuming a broken stream on another worker of the same pool (the Spot-loss case).

    stream breaks after bytes reached the client (relay.py)
      └─► resumable?  route's stream_resume, a pool target (not an upstream), the transcript
          │           complete, the request continuable (resume.py); else: refused(reason)
          ├─► pick another ready worker of the same pool: not tried by this stream, circuit not
          │   open, the balancing policy's choice; none: refused(no_worker)
          ├─► send the continuation; it must start streaming within the idle timeout
          │     fails before its first event ─► try another worker (counts as an attempt)
          ├─► splice its events into the client's stream (resume.py `Splicer`)
          │     ends with [DONE] ─► the stream is saved
          │     breaks again      ─► resume again, from everything relayed so far
          └─► at most `--max-stream-resumes` continuation attempts per stream; then refused
              (limit_reached) and the relay sends the SPEC's single SSE error event
    every choice had already ended (only [DONE] missing) and no usage was asked for: the router
    ends the stream itself (outcome `finished`); with usage asked for, a continuation still runs
    for its `usage` (its choices are dropped)

Breakers and in-flight counts see continuations as ordinary attempts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from router.balancing import Endpoint
from router.call import Call, ClientGone
from router.errors import UpstreamError, UpstreamStatusError, UpstreamTimeout
from router.guard import CLIENT_GONE
from router.resume import (
    DISABLED,
    LIMIT_REACHED,
    NO_WORKER,
    TRANSCRIPT_INCOMPLETE,
    UPSTREAM_TARGET,
    Continuation,
    Splicer,
    plan_continuation,
)
from router.routing import Target
from router.runtime import RouterRuntime
from router.transcript import Relayed, StreamTranscript
from router.upstream import UpstreamReply

if TYPE_CHECKING:
    from router.relay import Exchange

log = logging.getLogger("router.resuming")

_DONE = b"data: [DONE]\n\n"


class StreamResumer:
    def __init__(self, rt: RouterRuntime, exchange: Exchange) -> None:
        self.rt = rt
        self.exchange = exchange

    async def resume(self, call: Call, target: Target, failed: Endpoint,
                     transcript: StreamTranscript, problem: str) -> str | None:
        """None once the stream has ended well on another worker, else the problem to report
        in the stream's error event."""
        rt = self.rt
        metrics = rt.metrics
        limit = rt.settings.max_stream_resumes
        broke_at = call.guard.last_activity()
        tried = {failed.key}
        while True:
            refusal = self._refusal(call, target, transcript)
            relayed: Relayed | None = None
            plan: Continuation | str | None = None
            if refusal is None:
                relayed = transcript.summary()
                plan = plan_continuation(call.request, target.model, relayed)
                if isinstance(plan, str):
                    refusal = plan
            if (isinstance(plan, Continuation) and plan.finished
                    and not call.request.include_usage):
                # Every choice already ended, only [DONE] was missing: no worker needed.
                await call.send({"type": "http.response.body", "body": _DONE, "more_body": True})
                transcript.add(_DONE)
                call.resumed = True
                metrics.resumes.labels("finished").inc()
                return None
            if refusal is None and len(tried) > limit:
                refusal = LIMIT_REACHED
            picked = None if refusal is not None else self._pick_same_pool(call, target, tried)
            if refusal is None and picked is None:
                refusal = NO_WORKER
            if refusal is not None:
                metrics.resume_refusals.labels(refusal).inc()
                return f"{problem}; not resumed ({refusal.replace('_', ' ')})"
            assert picked is not None and isinstance(plan, Continuation) and relayed is not None
            tried.add(picked.key)
            events_before = transcript.events
            outcome = await self._continue(call, target, picked, plan, relayed, transcript,
                                           broke_at)
            if outcome is None:
                call.resumed = True
                metrics.resumes.labels("resumed").inc()
                return None
            metrics.resumes.labels("attempt_failed").inc()
            problem = outcome
            if transcript.events != events_before:  # it relayed some: the next gap starts later
                broke_at = call.guard.last_activity()

    def _refusal(self, call: Call, target: Target, transcript: StreamTranscript) -> str | None:
        if target.pool is None or any(e.is_upstream for e in target.endpoints):
            return UPSTREAM_TARGET
        plan = self.rt.planner.plan(self.rt.keeper.snapshot(), call.request.model,
                                    self.rt.keeper.known_models).pick(call.choice)
        if not plan.resume or self.rt.settings.max_stream_resumes == 0:
            return DISABLED
        if not transcript.complete:
            return TRANSCRIPT_INCOMPLETE
        return None

    def _pick_same_pool(self, call: Call, target: Target, tried: set[str]) -> Endpoint | None:
        """Another endpoint of the same target, from the current snapshot."""
        rt = self.rt
        now = time.monotonic()
        plan = rt.planner.plan(rt.keeper.snapshot(), call.request.model,
                               rt.keeper.known_models).pick(call.choice)
        for current in plan.targets:
            if current.label != target.label:
                continue
            candidates = [e for e in current.endpoints
                          if e.key not in tried and rt.breakers.available(e.key, now)]
            if not candidates:
                return None
            chosen = (candidates[0] if len(candidates) == 1
                      else rt.policy.choose(candidates, rt.inflight))
            if chosen is not None and rt.breakers.get(chosen.key).acquire(now):
                return chosen
        return None

    async def _continue(self, call: Call, target: Target, endpoint: Endpoint,
                        plan: Continuation, relayed: Relayed, transcript: StreamTranscript,
                        broke_at: float) -> str | None:
        """One continuation attempt on `endpoint`: None when the stream ended well."""
        rt = self.rt
        settings = rt.settings
        guard = call.guard
        exchange = self.exchange
        breaker = rt.breakers.get(endpoint.key)
        url = endpoint.base_url + "/v1" + call.request.path
        response: UpstreamReply | None = None
        rt.inflight.start(endpoint.key)
        rt.policy.on_start(endpoint)
        try:
            try:
                # The client is mid-stream: the new worker gets the stream's idle tolerance to
                # start, not the first-byte timeout of a fresh request.
                guard.first_byte(settings.idle_timeout_s)
                response = await rt.upstream.open(url, plan.body,
                                                  exchange.headers_for(endpoint, target, call))
                if response.status != 200 or not response.is_event_stream:
                    raise UpstreamStatusError(response.status, await response.read_all())
                data, pending = b"", b""
                splicer = Splicer(relayed, plan)
                while not data:  # the continuation's opening role event alone relays nothing
                    first, pending = await exchange.first_events(response, pending)
                    data = splicer.rewrite(first)
            except asyncio.CancelledError:
                reason = guard.consume()
                if reason is None:
                    raise
                if reason == CLIENT_GONE:
                    raise ClientGone() from None
                raise UpstreamTimeout(f"{reason.replace('_', ' ')} from {endpoint.key}") from None
            guard.idle(settings.idle_timeout_s)
            rt.metrics.resume_gap.observe(max(0.0, guard.last_activity() - broke_at))
            await call.send({"type": "http.response.body", "body": data, "more_body": True})
            transcript.add(data)
            log.info("stream resumed on %s after %d tokens", endpoint.key, plan.sent_tokens,
                     extra={"worker_id": endpoint.key, "target": target.label})
            problem = await exchange.pump(call, endpoint, response, pending, transcript, splicer)
        except UpstreamError as exc:
            breaker.record_failure(time.monotonic())
            if response is not None:
                response.close()
            log.warning("stream continuation on %s failed: %s", endpoint.key, exc.message,
                        extra={"worker_id": endpoint.key, "target": target.label})
            return f"the continuation on another worker failed ({exc.message})"
        except BaseException:
            breaker.record_abandoned()
            if response is not None:
                response.close()
            raise
        finally:
            rt.inflight.finish(endpoint.key)
            rt.policy.on_finish(endpoint)
        if problem is None:
            breaker.record_success()
            response.release()
            return None
        response.close()
        exchange.stream_broke(endpoint, problem, transcript)
        return problem
