"""Open-loop client traffic for the peer benchmark: seeded Poisson arrivals, every request timed
alone (time to first byte of a stream's first event, and to its end) and classified.

A request succeeds when it gets a 200 and a complete answer: a stream must end with
`data: [DONE]` and carry no `error` frame (a stream cut without it is a failure the openai SDK
would not even notice - see FACTS.md), a plain answer must hold `choices`. Everything else - an
error status, a reset connection, a timeout, a cut stream - is a failure the client saw.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

REQUEST_TIMEOUT_S = 30.0


@dataclass
class Outcome:
    started_s: float  # since the start of the run
    ok: bool
    stream: bool
    total_s: float
    ttft_s: float | None  # first event of a stream (None when not streamed or nothing came)
    failure: str = ""  # "status 502", "ClientConnectorError", "cut stream", ...


def _complete(body: bytes, stream: bool) -> str:
    """'' when `body` is a whole, error-free answer, else what is wrong with it."""
    if stream:
        if b'"error"' in body:
            return "error frame"
        return "" if body.rstrip().endswith(b"data: [DONE]") else "cut stream"
    return "" if b'"choices"' in body else "no choices"


async def send(session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes,
               stream: bool, origin: float) -> Outcome:
    started = time.perf_counter()
    ttft: float | None = None
    try:
        async with session.post(url + "/v1/chat/completions", data=body,
                                headers=headers) as response:
            chunks = []
            async for chunk in response.content.iter_any():
                if ttft is None and stream:
                    ttft = time.perf_counter() - started
                chunks.append(chunk)
            total = time.perf_counter() - started
            if response.status != 200:
                return Outcome(started - origin, False, stream, total, ttft,
                               f"status {response.status}")
            problem = _complete(b"".join(chunks), stream)
            return Outcome(started - origin, not problem, stream, total, ttft, problem)
    except (TimeoutError, aiohttp.ClientError) as exc:
        return Outcome(started - origin, False, stream, time.perf_counter() - started, ttft,
                       type(exc).__name__)


def session(concurrency: int = 0) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        headers={"content-type": "application/json"},
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))


async def poisson(rate: float, seconds: float, one: Callable[[int, float], Awaitable[object]],
                  *, seed: int = 7,
                  at: tuple[float, Callable[[], None]] | None = None) -> list[object]:
    """Call `one(index, origin)` at seeded Poisson arrivals of `rate`/s for `seconds`, without
    waiting for earlier calls (open loop); `at=(t, action)` runs `action` once `t` s in.
    Returns the calls' results in arrival order, once all are done."""
    rng = random.Random(seed)
    origin = time.perf_counter()
    tasks: list[asyncio.Task[object]] = []
    pending_action = at
    due = origin
    for index in itertools.count():
        due += rng.expovariate(rate)
        if due - origin >= seconds:
            break
        while pending_action and pending_action[0] <= due - origin:
            await asyncio.sleep(max(0.0, origin + pending_action[0] - time.perf_counter()))
            pending_action[1]()
            pending_action = None
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one(index, origin)))  # type: ignore[arg-type]
    if pending_action:
        pending_action[1]()
    return list(await asyncio.gather(*tasks))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")
