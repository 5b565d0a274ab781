"""The OpenAI endpoints (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`): raw ASGI.

    authenticate (401, 503 if keys cannot be verified) ─► read body (413) ─► parse (400)
    ─► allow-list (403) ─► plan for the model (404) ─► limits (429) ─► watch the client
    ─► failover loop (failover.py) ─► one attempt and its relay (relay.py)

Every refusal is OpenAI-shaped and made before any upstream call. A raw ASGI endpoint rather than
a Starlette Request/Response: the hot path parses the body once and sends the upstream's bytes
without wrapping them (see docs/router.md for the measured costs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from router.cache import HIT, MISS, Cached
from router.call import Call, ClientGone, Send
from router.errors import RequestRejected, RouterError
from router.failover import Forwarder
from router.guard import CLIENT_GONE, RequestGuard
from router.inbound import ClientRequest, parse_request, read_body
from router.relay import STREAM_HEADERS, Exchange
from router.runtime import RouterRuntime

log = logging.getLogger("router.proxy")
# One line per proxied request when `--access-log` is on; the request id comes from the logging
# context (router/edge.py), the same id the worker's engine receives as `x-request-id`.
access_log = logging.getLogger("router.access")


def header(scope: Mapping[str, Any], name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def send_error(send: Send, error: RouterError) -> None:
    body = error.body()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_cached(send: Send, cached: Cached, extra: list[tuple[bytes, bytes]]) -> None:
    """A cached answer: a whole body, or a stream replayed from its stored events."""
    if cached.stream:
        headers = [*STREAM_HEADERS]
    else:
        headers = [(b"content-type", cached.content_type),
                   (b"content-length", str(len(cached.body)).encode())]
    headers += [(b"x-flotilla-target", cached.target.encode()), *HIT, *extra]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": cached.body, "more_body": False})


class ProxyEndpoint:
    def __init__(self, rt: RouterRuntime) -> None:
        self.rt = rt
        self.exchange = Exchange(rt)
        self.forwarder = Forwarder(rt, self.exchange)

    def _choose(self, request: ClientRequest, threshold: float,
                headers: list[tuple[bytes, bytes]]) -> str:
        """Score the request (complexity.py) and pick the auto target's side; shown in a header
        and counted by choice."""
        score = self.rt.scorer.score(request).value
        choice = "large" if score >= threshold else "small"
        headers.append((b"x-flotilla-complexity", b"%.3f; choice=%b" % (score, choice.encode())))
        self.rt.metrics.observe_complexity(request.model, choice, score)
        return choice

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        rt = self.rt
        timing = scope["flotilla.timing"]
        model_label = "unknown"
        target = "none"
        status = 500
        guard: RequestGuard | None = None
        call: Call | None = None
        try:
            principal = None
            if rt.keys is not None:
                principal = await rt.keys.authenticate(header(scope, b"authorization"))
            body = await read_body(scope, receive, rt.settings.max_body_bytes)
            request = parse_request(scope["path"], body)
            if principal is not None and not principal.may_use(request.model):
                raise RequestRejected(
                    403, f"This API key is not allowed to use the model `{request.model}`.",
                    param="model", code="model_not_allowed")
            plan = rt.planner.plan(rt.keeper.snapshot(), request.model, rt.keeper.known_models)
            model_label = request.model
            if principal is not None:
                rt.limiter.admit(principal)
            choice = None
            extra_headers: list[tuple[bytes, bytes]] = []
            if plan.auto is not None:
                choice = self._choose(request, plan.auto.threshold, extra_headers)
                plan = plan.pick(choice)
            ticket = None
            if plan.cache is not None:
                ticket = rt.cache.ticket(plan, request, principal.key_id if principal else None)
                cached = None if ticket is None else await rt.cache.lookup(ticket, model_label)
                if cached is not None:
                    target = cached.target
                    status = 200
                    await send_cached(send, cached, extra_headers)
                    return
                if ticket is not None:
                    extra_headers.extend(MISS)
            guard = RequestGuard()
            guard.watch_client(receive)
            call = Call(request=request, request_id=scope["flotilla.request_id"], timing=timing,
                        guard=guard, send=send, principal=principal, arrived=time.monotonic(),
                        choice=choice, cache=ticket, extra_headers=extra_headers)
            try:
                await self.forwarder.forward(call)
            finally:
                target = call.target
            status = call.status
            if call.ttft_s is not None:
                rt.metrics.observe_ttft(model_label, target, call.ttft_s)
        except RouterError as exc:
            status = exc.status
            if guard is not None:
                guard.close()
            if status >= 500:
                log.warning("answering %d: %s", status, exc.message)
            await send_error(send, exc)
        except ClientGone:
            status = 499
            rt.metrics.disconnects.inc()
        except asyncio.CancelledError:
            reason = guard.consume() if guard is not None else None
            if reason is None:
                raise
            if reason == CLIENT_GONE:
                status = 499
                rt.metrics.disconnects.inc()
            else:  # guards are disarmed between attempts; this is a safety net
                status = 504
                if guard is not None:
                    guard.close()
                with contextlib.suppress(RuntimeError):
                    await send_error(send, RouterError(504, f"Upstream {reason}."))
        except Exception:
            log.exception("unexpected error while proxying")
            status = 500
            if call is None or not call.status:  # nothing sent yet: answer in OpenAI's shape
                if guard is not None:
                    guard.close()
                await send_error(send, RouterError(500, "The router failed unexpectedly.",
                                                   code="internal_error"))
        finally:
            if guard is not None:
                guard.close()
            now = time.perf_counter()
            rt.metrics.observe_request(model_label, target, status, now - timing.started)
            overhead_s = (timing.reported_s if timing.reported_s is not None
                          else timing.overhead_s(now))
            rt.metrics.overhead.observe(overhead_s)
            if rt.settings.access_log:
                duration_ms = round((now - timing.started) * 1000.0, 3)
                access_log.info(
                    "%s %s %d %s -> %s %.1f ms", scope["method"], scope["path"], status,
                    model_label, target, duration_ms,
                    extra={"method": scope["method"], "path": scope["path"], "status": status,
                           "model": model_label, "target": target,
                           "attempts": call.attempts if call is not None else 0,
                           "duration_ms": duration_ms,
                           "overhead_ms": round(overhead_s * 1000.0, 3)})
