"""The OpenAI endpoints through a real router in front of real simulators, with the official SDK."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from tests.router.conftest import INSTANT, Fleet


@pytest.fixture(params=["httptools", "aiohttp"])
def upstream_client(request: pytest.FixtureRequest) -> str:
    """Every test here runs with both upstream clients (same interface, same behaviour)."""
    return request.param


async def test_chat_completion_with_the_async_sdk_carries_router_headers(start_sim, fleet: Fleet,
                                                                         start_router) -> None:
    sim = await start_sim("m1", *INSTANT)
    await fleet.add_worker(sim)
    router = await start_router(no_auth=True)
    raw = await router.client().chat.completions.with_raw_response.create(
        model="m1", messages=[{"role": "user", "content": "hello"}],
        extra_headers={"x-request-id": "client-chosen-id"})
    completion = raw.parse()
    assert completion.model == "m1"
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert raw.headers["x-request-id"] == "client-chosen-id"
    assert raw.headers["x-flotilla-target"] == "model:m1"
    assert float(raw.headers["x-flotilla-overhead-ms"]) >= 0


async def test_streamed_chat_is_relayed_chunk_by_chunk_with_done(start_sim, fleet: Fleet,
                                                                 start_router) -> None:
    sim = await start_sim("m1", "--ttft-ms", "5", "--itl-ms", "5", "--output-tokens", "12")
    await fleet.add_worker(sim)
    router = await start_router(no_auth=True)
    stream = await router.client().chat.completions.create(
        model="m1", messages=[{"role": "user", "content": "hello"}], stream=True,
        stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    # The raw bytes end with [DONE]: the relay forwards the engine's events untouched.
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(router.url + "/v1/completions", json={
            "model": "m1", "prompt": "hi", "stream": True, "max_tokens": 3})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.rstrip().endswith("data: [DONE]")
    assert response.headers["x-request-id"]


async def test_sync_sdk_non_streamed_and_streamed(start_sim, fleet: Fleet,
                                                  start_router) -> None:
    sim = await start_sim("m1", *INSTANT)
    await fleet.add_worker(sim)
    router = await start_router(no_auth=True)

    def calls() -> tuple[str, str]:
        with router.sync_client() as client:
            done = client.chat.completions.create(
                model="m1", messages=[{"role": "user", "content": "hi"}])
            streamed = "".join(
                (c.choices[0].delta.content or "") if c.choices else ""
                for c in client.chat.completions.create(
                    model="m1", messages=[{"role": "user", "content": "hi"}], stream=True))
            return done.choices[0].message.content or "", streamed

    # The sync SDK blocks: it runs in a thread while the router serves in this loop.
    done, streamed = await asyncio.to_thread(calls)
    assert done and streamed


async def test_route_rewrites_the_model_to_the_pool_and_names_the_target(
        start_sim, fleet: Fleet, start_router) -> None:
    sim = await start_sim("org/engine-model", *INSTANT)
    await fleet.put_pool("small", "org/engine-model")
    await fleet.add_worker(sim, pool="small")
    await fleet.put_route("gpt-4o-mini", [{"pool": "small"}])
    router = await start_router(no_auth=True)
    raw = await router.client().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    # The engine saw (and reports) its own model id: the response's model is the engine's.
    assert raw.parse().model == "org/engine-model"
    assert raw.headers["x-flotilla-target"] == "pool:small"
    models = await router.client().models.list()
    assert {"gpt-4o-mini", "org/engine-model"} <= {m.id for m in models.data}


async def test_embeddings_are_relayed_from_a_tei_worker(start_sim, fleet: Fleet,
                                                       start_router) -> None:
    sim = await start_sim("embedder", *INSTANT, "--dims", "16", kind="tei")
    await fleet.add_worker(sim)
    router = await start_router(no_auth=True)
    result = await router.client().embeddings.create(model="embedder", input=["a", "b"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 16


async def test_upstream_target_gets_the_key_from_its_environment_variable(
        start_sim, fleet: Fleet, start_router, monkeypatch: pytest.MonkeyPatch) -> None:
    # The "paid API" is another simulator; the route names the variable holding its key.
    paid = await start_sim("paid-model", *INSTANT)
    monkeypatch.setenv("FLOTILLA_TEST_UPSTREAM_KEY", "sk-upstream-secret")
    await fleet.put_pool("cold", "local-model")
    await fleet.put_route("chat", [{"pool": "cold"},
                                   {"upstream": paid.url + "/v1",
                                    "api_key_env": "FLOTILLA_TEST_UPSTREAM_KEY",
                                    "model": "paid-model"}])
    router = await start_router(no_auth=True)
    raw = await router.client().chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}])
    assert raw.parse().model == "paid-model"
    assert raw.headers["x-flotilla-target"] == f"upstream:127.0.0.1:{paid.port}"
    report = router.runtime.reporter.report()
    assert report.demand["cold"].cold_requests == 1


async def test_engine_4xx_is_normalised_and_not_retried(start_sim, fleet: Fleet,
                                                        start_router) -> None:
    sim = await start_sim("m1", *INSTANT, "--max-model-len", "64")
    await fleet.add_worker(sim)
    router = await start_router(no_auth=True)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(router.url + "/v1/completions", json={
            "model": "m1", "prompt": "x", "max_tokens": 10_000})
    assert response.status_code == 400
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert error["code"] is None or isinstance(error["code"], str)
    stats = await sim.stats()
    assert stats["received"] == 1  # one attempt only


async def test_engine_error_reaches_the_sdk_as_its_usual_exception(start_sim, fleet: Fleet,
                                                                   start_router) -> None:
    sim = await start_sim("m1", *INSTANT, "--max-model-len", "64")
    await fleet.add_worker(sim)
    router = await start_router(no_auth=True)
    with pytest.raises(openai.BadRequestError):
        await router.client().completions.create(model="m1", prompt="x", max_tokens=10_000)
