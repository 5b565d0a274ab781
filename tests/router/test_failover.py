"""Failover, circuit breaking and broken streams, with real simulators and their fault switches."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from router.breaker import CIRCUIT_OPEN, HEALTHY
from tests.router.conftest import INSTANT, Fleet


@pytest.fixture(params=["httptools", "aiohttp"])
def upstream_client(request: pytest.FixtureRequest) -> str:
    """Every test here runs with both upstream clients (same interface, same behaviour)."""
    return request.param


MESSAGES = [{"role": "user", "content": "hello"}]


async def test_killing_a_worker_under_load_fails_no_request_and_no_stream_silently(
        start_sim, fleet: Fleet, start_router) -> None:
    paced = ("--ttft-ms", "30", "--itl-ms", "10", "--output-tokens", "20")
    doomed = await start_sim("m1", *paced)
    survivor = await start_sim("m1", *paced)
    await fleet.add_worker(doomed)
    await fleet.add_worker(survivor)
    router = await start_router(no_auth=True)
    client = router.client()
    outcomes = {"ok": 0, "failed": 0, "streams_done": 0, "streams_error_event": 0,
                "streams_silent": 0}

    async def plain() -> None:
        for _ in range(12):
            try:
                done = await client.chat.completions.create(model="m1", messages=MESSAGES)
                assert done.choices[0].message.content
                outcomes["ok"] += 1
            except openai.APIError:
                outcomes["failed"] += 1

    async def streamed() -> None:
        for _ in range(6):
            text = ""
            try:
                stream = await client.chat.completions.create(model="m1", messages=MESSAGES,
                                                              stream=True)
                async for chunk in stream:
                    if chunk.choices:
                        text += chunk.choices[0].delta.content or ""
                        if chunk.choices[0].finish_reason:
                            outcomes["streams_done"] += 1
                            break
                else:
                    outcomes["streams_silent"] += 1  # ended without finish and without error
            except openai.APIError:
                outcomes["streams_error_event"] += 1

    async def killer() -> None:
        await doomed.wait_stats(timeout=20, running=lambda n: n >= 3)
        doomed.proc.kill()

    await asyncio.gather(*[plain() for _ in range(8)], *[streamed() for _ in range(4)], killer())
    assert outcomes["failed"] == 0, outcomes
    assert outcomes["ok"] == 96
    assert outcomes["streams_silent"] == 0, outcomes
    assert outcomes["streams_done"] + outcomes["streams_error_event"] == 24
    assert router.runtime.breakers.get(f"w-{doomed.port}").state == CIRCUIT_OPEN


async def test_circuit_opens_after_three_failures_then_half_opens_and_closes(
        start_sim, fleet: Fleet, start_router) -> None:
    flaky = await start_sim("m1", *INSTANT, "--error-rate", "1.0")
    steady = await start_sim("m1", *INSTANT)
    await fleet.add_worker(flaky, worker_id="flaky")
    await fleet.add_worker(steady, worker_id="steady")
    router = await start_router(no_auth=True, breaker_recovery_s=0.5, policy="round_robin")
    client = router.client()
    breaker = router.runtime.breakers.get("flaky")
    states = []
    for _ in range(8):
        await client.chat.completions.create(model="m1", messages=MESSAGES)  # never fails
        states.append(breaker.state)
    assert (await flaky.stats())["received"] == 3
    assert states[-1] == CIRCUIT_OPEN and "degraded" in states
    # Open: no traffic at all, whatever the policy says.
    for _ in range(5):
        await client.chat.completions.create(model="m1", messages=MESSAGES)
    assert (await flaky.stats())["received"] == 3
    # Recovery passes with the fault gone: one probe goes through and closes the circuit.
    await flaky.put_faults(error_rate=0.0)
    await asyncio.sleep(0.6)
    for _ in range(4):
        await client.chat.completions.create(model="m1", messages=MESSAGES)
    assert breaker.state == HEALTHY
    assert (await flaky.stats())["completed"] >= 1
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(router.url + "/metrics")).text
    assert 'flotilla_router_circuit_transitions_total{state="circuit_open"} 1.0' in text
    assert 'flotilla_router_retries_total{reason="status"} 3.0' in text


async def test_failed_probe_reopens_the_circuit_for_a_full_recovery(start_sim, fleet: Fleet,
                                                                    start_router) -> None:
    flaky = await start_sim("m1", *INSTANT, "--error-rate", "1.0")
    steady = await start_sim("m1", *INSTANT)
    await fleet.add_worker(flaky, worker_id="flaky")
    await fleet.add_worker(steady, worker_id="steady")
    router = await start_router(no_auth=True, breaker_recovery_s=0.4, policy="round_robin")
    client = router.client()
    for _ in range(6):
        await client.chat.completions.create(model="m1", messages=MESSAGES)
    assert (await flaky.stats())["received"] == 3
    await asyncio.sleep(0.5)
    for _ in range(4):
        await client.chat.completions.create(model="m1", messages=MESSAGES)
    # Exactly one probe went to the flaky worker, failed, and the circuit is open again.
    assert (await flaky.stats())["received"] == 4
    assert router.runtime.breakers.get("flaky").state == CIRCUIT_OPEN


async def test_exhausted_retries_answer_the_engines_5xx_with_should_retry_false(
        start_sim, fleet: Fleet, start_router) -> None:
    sim = await start_sim("m1", *INSTANT, "--error-rate", "1.0")
    await fleet.add_worker(sim)
    router = await start_router(no_auth=True, breaker_threshold=10)
    # An SDK that would retry twice on its own: x-should-retry: false stops it.
    async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key="x",
                                  max_retries=2) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="m1", messages=MESSAGES)
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert (await sim.stats())["received"] == 3  # the router's attempts, not multiplied


async def test_hung_worker_times_out_and_the_request_is_served_elsewhere(
        start_sim, fleet: Fleet, start_router) -> None:
    hung = await start_sim("m1", *INSTANT, "--hang-rate", "1.0")
    fine = await start_sim("m1", *INSTANT)
    await fleet.add_worker(hung, worker_id="hung", queue_depth=0)
    await fleet.add_worker(fine, worker_id="fine", queue_depth=5)
    router = await start_router(no_auth=True, first_byte_timeout_s=0.3)
    started = time.monotonic()
    done = await router.client().chat.completions.create(model="m1", messages=MESSAGES)
    assert done.choices[0].message.content
    assert time.monotonic() - started < 10
    assert router.runtime.breakers.get("hung").state == "degraded"
    await hung.wait_stats(cancelled=1)  # the hung attempt was cancelled upstream


async def test_stream_broken_after_first_bytes_ends_with_one_error_event(
        start_sim, fleet: Fleet, start_router) -> None:
    sim = await start_sim("m1", *INSTANT, "--abort-stream-after-tokens", "3",
                          "--output-tokens", "10")
    await fleet.add_worker(sim)
    router = await start_router(no_auth=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        stream = await router.client().chat.completions.create(model="m1", messages=MESSAGES,
                                                               stream=True)
        async for chunk in stream:
            received.append(chunk)
    assert received, "the first events reached the client before the break"
    assert "interrupted" in str(caught.value.message)
    async with httpx.AsyncClient(timeout=10) as client:
        raw = await client.post(router.url + "/v1/chat/completions",
                                json={"model": "m1", "messages": MESSAGES, "stream": True})
    events = [e for e in raw.text.split("\n\n") if e.strip()]
    assert events[-1].startswith('data: {"error":')
    assert sum(1 for e in events if '"error"' in e) == 1
    assert "[DONE]" not in raw.text


async def test_cold_pool_waits_then_answers_503_with_retry_after(start_sim, fleet: Fleet,
                                                                 start_router) -> None:
    await fleet.put_pool("gpu", "big-model")
    await fleet.put_route("big", [{"pool": "gpu"}])
    router = await start_router(no_auth=True, cold_start_wait_s=0.3)
    with pytest.raises(openai.APIStatusError) as caught:
        await router.client().chat.completions.create(model="big", messages=MESSAGES)
    assert caught.value.status_code == 503
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert caught.value.code == "no_capacity"
    demand = router.runtime.reporter.report().demand["gpu"]
    assert demand.cold_requests == 1 and demand.waiting == 0 and demand.last_cold_at


async def test_request_held_in_the_cold_wait_is_served_when_a_worker_becomes_ready(
        start_sim, fleet: Fleet, start_router) -> None:
    sim = await start_sim("big-model", *INSTANT)
    await fleet.put_pool("gpu", "big-model")
    await fleet.put_route("big", [{"pool": "gpu"}])
    router = await start_router(no_auth=True, cold_start_wait_s=10)
    request = asyncio.create_task(
        router.client().chat.completions.create(model="big", messages=MESSAGES))
    for _ in range(200):
        if router.runtime.demand.snapshot().get("gpu") and \
                router.runtime.demand.snapshot()["gpu"].waiting == 1:
            break
        await asyncio.sleep(0.02)
    assert router.runtime.demand.snapshot()["gpu"].waiting == 1
    await fleet.add_worker(sim, pool="gpu")
    done = await asyncio.wait_for(request, 10)
    assert done.model == "big-model"
    assert router.runtime.demand.snapshot()["gpu"].waiting == 0
