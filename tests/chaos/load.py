"""Steady client load for the chaos scenarios, and the ledger that proves nothing was lost.

A bounded number of client loops send chat completions through the official `openai` async SDK
(half streamed, half not, in a seeded order), one request at a time each, for a fixed duration.
Every request ends in exactly one of these outcomes:

| outcome | meaning | visible to the caller? |
|---|---|---|
| `ok` | a whole answer: non-streamed with a `finish_reason`, or a stream that delivered one | - |
| `failed` | the SDK raised before an answer (HTTP error status, connection error) | yes |
| `stream_error` | the stream raised mid-way: the router's SSE error event (`APIError`) | yes |
| `stream_cut` | the stream's connection broke mid-way, no error event (a router died) | yes |
| `silent` | no exception, yet no `finish_reason`: a stream closed early, an empty answer | NO |
| `garbled` | a stream whose chunks came from two answers (ids differ, the role sent twice) | NO |
| `hang` | still unanswered after `hang_bound_s` (the SDK's own timeout is set beyond it) | NO |

`silent`, `garbled` and `hang` are the losses a chaos scenario must never see. The SDK's retries
are off (`max_retries=0`) so that every failure the router lets through is counted, not hidden.

With several routers (`urls`), each loop starts on its own router and, when a router cannot be
reached at all (connection refused before any answer: a dead replica), re-sends the request to
the next one, as a client-side load balancer or a proxy in front of the routers would. That is
counted in `client_failovers`, and the request's outcome is the re-sent one's.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai

MODEL = "org/model"
MESSAGES = [{"role": "user", "content": "tell me about spot instances"}]

OK, FAILED, STREAM_ERROR, STREAM_CUT, SILENT, GARBLED, HANG = (
    "ok", "failed", "stream_error", "stream_cut", "silent", "garbled", "hang")


@dataclass
class Outcome:
    started: float  # monotonic
    ended: float
    stream: bool
    kind: str
    reason: str = ""

    @property
    def latency_s(self) -> float:
        return self.ended - self.started


def _status_reason(exc: openai.APIStatusError) -> str:
    code = None
    body = exc.body if isinstance(exc.body, dict) else None
    if body is not None:
        error = body.get("error", body)
        if isinstance(error, dict):
            code = error.get("code")
    return f"{exc.status_code} {code}" if code else str(exc.status_code)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


@dataclass
class ChaosLoad:
    urls: list[str]
    api_key: str
    concurrency: int = 12
    stream_fraction: float = 0.5
    hang_bound_s: float = 20.0
    max_tokens: int | None = None
    seed: int = 7
    outcomes: list[Outcome] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    client_failovers: int = 0
    in_flight: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._stop = asyncio.Event()
        self.t0 = time.monotonic()
        # The SDK's timeout lies beyond the hang bound, so a hang is ours to see, not a timeout.
        self._clients = [openai.AsyncOpenAI(base_url=url + "/v1", api_key=self.api_key,
                                            max_retries=0, timeout=self.hang_bound_s + 30)
                         for url in self.urls]

    def mark(self, name: str) -> None:
        """Remember when something happened (`fault`, `recovered`, ...), for the figures."""
        self.marks[name] = time.monotonic()

    async def run(self, duration_s: float, during: Any = None) -> None:
        """Load for `duration_s` while awaiting `during` (the fault script), then let every
        request in flight end (each is bounded by the hang bound)."""
        self.t0 = time.monotonic()
        loops = [asyncio.create_task(self._loop(i)) for i in range(self.concurrency)]
        try:
            if during is not None:
                await during
            remaining = duration_s - (time.monotonic() - self.t0)
            if remaining > 0:
                await asyncio.sleep(remaining)
        finally:
            self._stop.set()
            await asyncio.gather(*loops, return_exceptions=True)
            for client in self._clients:
                await client.close()

    async def _loop(self, index: int) -> None:
        home = index % len(self._clients)
        while not self._stop.is_set():
            stream = self._rng.random() < self.stream_fraction
            started = time.monotonic()
            self.in_flight += 1
            try:
                kind, reason = await asyncio.wait_for(self._request(home, stream),
                                                      self.hang_bound_s)
            except TimeoutError:
                kind, reason = HANG, f"no end after {self.hang_bound_s:.0f} s"
            finally:
                self.in_flight -= 1
            self.outcomes.append(Outcome(started, time.monotonic(), stream, kind, reason))

    async def _request(self, home: int, stream: bool) -> tuple[str, str]:
        tries = len(self._clients)
        for attempt in range(tries):
            client = self._clients[(home + attempt) % tries]
            try:
                return await self._one(client, stream)
            except openai.APITimeoutError:
                return FAILED, "client_timeout"
            except openai.APIConnectionError as exc:
                if attempt + 1 < tries and _refused(exc):
                    self.client_failovers += 1
                    continue
                return FAILED, "connection_error"
        raise AssertionError("unreachable")

    async def _one(self, client: openai.AsyncOpenAI, stream: bool) -> tuple[str, str]:
        extra: dict[str, Any] = {}
        if self.max_tokens is not None:
            extra["max_tokens"] = self.max_tokens
        try:
            if not stream:
                done = await client.chat.completions.create(model=MODEL, messages=MESSAGES,
                                                            **extra)
                choice = done.choices[0] if done.choices else None
                if choice is None or not choice.finish_reason or not choice.message.content:
                    return SILENT, "answer without finish_reason or text"
                return OK, ""
            response = await client.chat.completions.create(model=MODEL, messages=MESSAGES,
                                                            stream=True, **extra)
        except openai.APIStatusError as exc:
            return FAILED, _status_reason(exc)
        finished = False
        ids: set[str] = set()
        roles = 0
        try:
            async for chunk in response:
                ids.add(chunk.id)
                if chunk.choices and chunk.choices[0].delta.role:
                    roles += 1
                if chunk.choices and chunk.choices[0].finish_reason:
                    finished = True
        except openai.APIStatusError as exc:  # pragma: no cover - statuses come before bytes
            return FAILED, _status_reason(exc)
        except (httpx.HTTPError, openai.APIConnectionError) as exc:
            # The connection broke mid-stream (openai-python wraps it; APIError's subclass).
            return STREAM_CUT, type(exc).__name__
        except openai.APIError as exc:
            # The router's SSE error event: {"error": {... "code": "stream_interrupted"}}.
            code = exc.code if isinstance(exc.code, str) else None
            return STREAM_ERROR, code or "error_event"
        if not finished:
            return SILENT, "stream closed without finish_reason or error event"
        if len(ids) > 1 or roles > 1:
            return GARBLED, f"{len(ids)} stream ids, {roles} role deltas"
        return OK, ""

    # -- figures --------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        kinds = Counter(o.kind for o in self.outcomes)
        failed = Counter(o.reason for o in self.outcomes if o.kind == FAILED)
        stream_errors = Counter(o.reason for o in self.outcomes if o.kind == STREAM_ERROR)
        cuts = Counter(o.reason for o in self.outcomes if o.kind == STREAM_CUT)
        lost = [f"{o.kind}: {o.reason}" for o in self.outcomes
                if o.kind in (SILENT, GARBLED, HANG)]
        fault = self.marks.get("fault")
        recovered = self.marks.get("recovered")
        before = [o.latency_s for o in self.outcomes if fault is None or o.ended < fault]
        # The fault window: from just before the fault (requests it caught in flight) to the
        # recovery the scenario saw, and at least 3 s (the router's timeouts in the stack).
        end = None if fault is None or recovered is None else max(recovered, fault + 3.0)
        during = [o.latency_s for o in self.outcomes
                  if fault is not None and o.started >= fault - 0.5
                  and (end is None or o.started <= end)]
        return {
            "concurrency": self.concurrency,
            "duration_s": round(max((o.ended for o in self.outcomes), default=self.t0)
                                - self.t0, 2),
            "sent": len(self.outcomes),
            "streamed": sum(o.stream for o in self.outcomes),
            "ok": kinds[OK],
            "failed": kinds[FAILED],
            "failed_by_reason": dict(failed),
            "stream_errors": kinds[STREAM_ERROR],
            "stream_errors_by_reason": dict(stream_errors),
            "stream_cuts": kinds[STREAM_CUT],
            "stream_cuts_by_reason": dict(cuts),
            "silent": kinds[SILENT],
            "garbled": kinds[GARBLED],
            "hangs": kinds[HANG],
            "lost_examples": lost[:5],
            "client_failovers": self.client_failovers,
            "p50_before_s": _round(percentile(before, 0.5)),
            "p99_before_s": _round(percentile(before, 0.99)),
            "p99_during_fault_s": _round(percentile(during, 0.99)),
            "max_during_fault_s": _round(max(during, default=None)),
            "requests_during_fault": len(during),
            "fault_window_s": (_round(recovered - fault)
                               if fault is not None and recovered is not None else None),
        }

    def assert_no_silent_loss(self) -> None:
        figures = self.summary()
        assert figures["sent"] > 0
        accounted = (figures["ok"] + figures["failed"] + figures["stream_errors"]
                     + figures["stream_cuts"] + figures["silent"] + figures["garbled"]
                     + figures["hangs"])
        assert accounted == figures["sent"], figures
        assert figures["silent"] == 0 and figures["garbled"] == 0, figures
        assert figures["hangs"] == 0, figures


def _refused(exc: openai.APIConnectionError) -> bool:
    """True when the router could not be reached at all (nothing was sent or answered)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, httpx.ConnectError | ConnectionRefusedError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
