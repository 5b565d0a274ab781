"""Faults, loading, crash and client disconnects on a real vLLM-kind process of each test's own."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from tests.simulator.conftest import INSTANT
from tests.simulator.rawhttp import close, read_head, read_response, request_bytes

MESSAGES = [{"role": "user", "content": "hello"}]
CHAT = {"model": "sim-model", "messages": MESSAGES}


async def test_another_seed_gives_another_text(start_sim) -> None:
    a = await start_sim(*INSTANT, "--seed", "1")
    b = await start_sim(*INSTANT, "--seed", "2")
    text_a = a.post("/v1/chat/completions", CHAT).json()["choices"][0]["message"]["content"]
    text_b = b.post("/v1/chat/completions", CHAT).json()["choices"][0]["message"]["content"]
    assert text_a and text_b and text_a != text_b


async def test_error_rate_one_answers_500_in_vllm_shape(start_sim) -> None:
    sim = await start_sim(*INSTANT, "--error-rate", "1.0")
    with pytest.raises(openai.InternalServerError) as caught:
        sim.client().chat.completions.create(model="sim-model", messages=MESSAGES)
    error = caught.value.response.json()["error"]
    assert (error["code"], error["type"]) == (500, "InternalServerError")
    assert sim.stats()["errors"] == 1


async def test_faults_flip_at_run_time_and_reset(start_sim) -> None:
    sim = await start_sim(*INSTANT)
    assert sim.post("/v1/chat/completions", CHAT).status_code == 200
    assert sim.put_faults(error_rate=1.0)["error_rate"] == 1.0
    assert sim.post("/v1/chat/completions", CHAT).status_code == 500
    assert sim.get("/admin/faults").json()["error_rate"] == 1.0
    assert httpx.delete(sim.url + "/admin/faults").json()["error_rate"] == 0.0
    assert sim.post("/v1/chat/completions", CHAT).status_code == 200
    refused = httpx.put(sim.url + "/admin/faults", json={"error_rate": 2})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "error_rate"


async def test_the_same_seed_meets_the_same_errors(start_sim) -> None:
    patterns = []
    for _ in range(2):
        sim = await start_sim(*INSTANT, "--error-rate", "0.5", "--seed", "11")
        with httpx.Client(base_url=sim.url, timeout=10) as client:
            patterns.append([client.post("/v1/completions", json={"prompt": "x"}).status_code
                             for _ in range(30)])
    assert patterns[0] == patterns[1]
    assert set(patterns[0]) == {200, 500}


async def test_crash_after_serves_n_requests_then_the_process_dies(start_sim) -> None:
    sim = await start_sim(*INSTANT, "--crash-after", "2")
    for _ in range(2):
        assert sim.post("/v1/completions", {"prompt": "x"}).status_code == 200
    assert sim.get("/health").status_code == 200  # only inference requests count
    with pytest.raises(httpx.TransportError):
        sim.post("/v1/completions", {"prompt": "x"})
    assert await sim.proc.wait_exit() == 1


async def test_crash_after_set_at_run_time_counts_from_then(start_sim) -> None:
    sim = await start_sim(*INSTANT)
    assert sim.post("/v1/completions", {"prompt": "x"}).status_code == 200
    sim.put_faults(crash_after=0)
    with pytest.raises(httpx.TransportError):
        sim.post("/v1/completions", {"prompt": "x"})
    assert await sim.proc.wait_exit() == 1


async def test_a_hung_request_is_counted_cancelled_when_the_client_gives_up(start_sim) -> None:
    sim = await start_sim(*INSTANT, "--hang-rate", "1.0")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(sim.url + "/v1/chat/completions", json=CHAT, timeout=0.5)
    stats = await sim.wait_stats(cancelled=1, hanging=0)
    assert (stats["received"], stats["completed"]) == (1, 0)


async def test_abort_stream_after_tokens_cuts_the_stream_without_done(start_sim) -> None:
    sim = await start_sim(*INSTANT, "--abort-stream-after-tokens", "3")
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    writer.write(request_bytes("POST", "/v1/chat/completions", {**CHAT, "stream": True}))
    response = await read_response(reader)
    await close(writer)
    assert response.status == 200 and not response.complete
    assert len(response.chunks) == 1 + 3  # role chunk and three tokens
    assert b"[DONE]" not in response.body
    assert (await sim.wait_stats(aborted=1))["completed"] == 0


async def test_abort_fault_also_breaks_the_sdk_stream_short(start_sim) -> None:
    sim = await start_sim(*INSTANT, "--output-tokens", "10")
    sim.put_faults(abort_stream_after_tokens=2)
    client = sim.async_client()
    received = []
    # A chunked body cut short is a transport error for the SDK (not a clean end of stream).
    with pytest.raises(openai.APIConnectionError):
        stream = await client.chat.completions.create(model="sim-model", messages=MESSAGES,
                                                      stream=True)
        async for chunk in stream:
            received.append(chunk)
    assert len(received) == 1 + 2
    await client.close()


async def test_loading_period_answers_503_then_becomes_healthy(start_sim) -> None:
    sim = await start_sim(*INSTANT, "--load-s", "2", ready="/metrics")
    assert sim.get("/health").status_code == 503
    response = sim.post("/v1/chat/completions", CHAT)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == 503
    assert sim.get("/v1/models").status_code == 503
    await sim.proc.wait_http(sim.url + "/health", timeout=20)
    assert sim.post("/v1/chat/completions", CHAT).status_code == 200


async def test_a_client_leaving_the_queue_is_cancelled_and_frees_its_place(start_sim) -> None:
    # One slot, held by a request whose first token takes a minute.
    sim = await start_sim("--max-num-seqs", "1", "--ttft-ms", "60000", "--itl-ms", "0")
    holder = await asyncio.open_connection("127.0.0.1", sim.port)
    holder[1].write(request_bytes("POST", "/v1/chat/completions", CHAT))
    await sim.wait_stats(running=1)
    queued = await asyncio.open_connection("127.0.0.1", sim.port)
    queued[1].write(request_bytes("POST", "/v1/chat/completions", CHAT))
    await sim.wait_stats(running=1, waiting=1)
    await close(queued[1])
    await sim.wait_stats(running=1, waiting=0, cancelled=1)
    await close(holder[1])
    stats = await sim.wait_stats(running=0, cancelled=2)
    assert stats["completed"] == 0
    metrics = sim.get("/metrics").text
    assert ('vllm:request_success_total{model_name="sim-model",engine="0",'
            'finished_reason="abort"} 2.0') in metrics


async def test_a_client_leaving_mid_stream_stops_generation(start_sim) -> None:
    sim = await start_sim("--ttft-ms", "0", "--itl-ms", "20", "--output-tokens", "100000",
                          "--max-model-len", "200000")
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    writer.write(request_bytes("POST", "/v1/chat/completions", {**CHAT, "stream": True}))
    status, _ = await read_head(reader)
    assert status == 200
    await reader.readuntil(b'"content":')  # a token arrived
    await close(writer)
    stats = await sim.wait_stats(cancelled=1, running=0)
    assert stats["completed"] == 0


async def test_sigterm_stops_the_process_cleanly(start_sim) -> None:
    sim = await start_sim(*INSTANT)
    sim.proc.send_signal(15)
    assert await sim.proc.wait_exit() == 0


async def test_flotilla_sim_command_serves_the_tei_kind(start_sim) -> None:
    sim = await start_sim("--kind", "tei", module="flotilla", command=("sim",))
    assert sim.get("/info").json()["model_id"] == "sim-model"
