"""Seamless mid-stream continuation: a worker dies mid-stream, the client sees one clean stream.

Real simulator processes (their text is a deterministic function of seed and prompt, and they
continue a partial answer exactly), a real router, the official SDK as the client.
"""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import openai
import orjson
import pytest

from router.inbound import parse_request
from router.resume import TOOL_CALLS, Continuation, Splicer, plan_continuation
from router.transcript import StreamTranscript
from simulator.textgen import TextGenerator
from tests.router.conftest import Fleet

PACED = ("--ttft-ms", "5", "--itl-ms", "10", "--output-tokens", "40")
LONG = ("--ttft-ms", "5", "--itl-ms", "10", "--output-tokens", "200")


def expected_chat(content: str, tokens: int = 40) -> str:
    return TextGenerator(0, tokens).chat([{"role": "user", "content": content}],
                                         continue_final=False, max_tokens=None).text


def expected_completion(prompt: str, tokens: int = 40) -> str:
    return TextGenerator(0, tokens).completion(prompt, max_tokens=None).text


async def read_chat_stream(client: openai.AsyncOpenAI, content: str, *,
                           underway: asyncio.Semaphore | None = None, **extra: object
                           ) -> dict[str, object]:
    """Read a whole chat stream; `underway` is released once 5 tokens have arrived."""
    stream = await client.chat.completions.create(
        model="m1", messages=[{"role": "user", "content": content}], stream=True,
        stream_options={"include_usage": True}, **extra)
    text, ids, finishes, usage, roles = "", set(), [], None, 0
    async for chunk in stream:
        ids.add(chunk.id)
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            if underway is not None and len(text.split()) == 5:
                underway.release()
                underway = None
            roles += 1 if choice.delta.role else 0
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    return {"text": text, "ids": ids, "finishes": finishes, "usage": usage, "roles": roles}


async def metric(router_url: str, name: str) -> float:
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(router_url + "/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- pure parts -------------------------------------------------------------------------------

def _transcript(*events: dict[str, object]) -> StreamTranscript:
    transcript = StreamTranscript()
    for event in events:
        transcript.add(b"data: " + orjson.dumps(event) + b"\n\n")
    return transcript


def _delta(content: str, finish: str | None = None, **more: object) -> dict[str, object]:
    return {"id": "chatcmpl-a", "created": 7, "choices": [
        {"index": 0, "delta": {"content": content, **more}, "finish_reason": finish}]}


def test_chat_continuation_prefills_the_relayed_text_and_reduces_max_tokens() -> None:
    request = parse_request("/v1/chat/completions", orjson.dumps({
        "model": "m1", "messages": [{"role": "user", "content": "hi"}], "stream": True,
        "max_tokens": 10}))
    relayed = _transcript(_delta("", role="assistant"), _delta("able "), _delta("about ")).summary()
    plan = plan_continuation(request, "pool-model", relayed)
    assert isinstance(plan, Continuation)
    body = orjson.loads(plan.body)
    assert body["messages"][-1] == {"role": "assistant", "content": "able about "}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["max_tokens"] == 8 and body["model"] == "pool-model"
    assert plan.sent_tokens == 2 and not plan.finished


def test_completions_continuation_appends_the_text_to_the_prompt() -> None:
    request = parse_request("/v1/completions", orjson.dumps(
        {"model": "m1", "prompt": ["Once"], "stream": True}))
    transcript = StreamTranscript()
    transcript.add(b'data: {"id":"cmpl-1","choices":[{"index":0,"text":" able "}]}\n\n')
    plan = plan_continuation(request, None, transcript.summary())
    assert isinstance(plan, Continuation)
    assert orjson.loads(plan.body)["prompt"] == "Once able "


def test_streams_with_tool_calls_or_several_choices_are_not_resumed() -> None:
    request = parse_request("/v1/chat/completions", orjson.dumps(
        {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "stream": True}))
    tools = _transcript(_delta("", tool_calls=[{"index": 0, "function": {"name": "f"}}]))
    assert plan_continuation(request, None, tools.summary()) == TOOL_CALLS
    several = parse_request("/v1/chat/completions", orjson.dumps(
        {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "stream": True, "n": 2}))
    assert plan_continuation(several, None, _transcript(_delta("a ")).summary()) \
        == "several_choices"


def test_splicer_keeps_the_id_drops_the_second_role_and_counts_usage_for_the_whole_answer(
        ) -> None:
    relayed = _transcript(_delta("", role="assistant"), _delta("able "), _delta("about ")).summary()
    splicer = Splicer(relayed, Continuation(b"{}", sent_tokens=2, finished=False))
    new = [{"id": "chatcmpl-b", "created": 9, "choices": [
               {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
           {"id": "chatcmpl-b", "created": 9, "choices": [
               {"index": 0, "delta": {"content": "above "}, "finish_reason": "stop"}]},
           {"id": "chatcmpl-b", "created": 9, "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}}]
    data = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in new) + b"data: [DONE]\n\n"
    out = [orjson.loads(p) if p != b"[DONE]" else p
           for p in (line[6:] for line in splicer.rewrite(data).split(b"\n\n") if line)]
    assert len(out) == 3 and out[-1] == b"[DONE]"
    assert out[0]["id"] == "chatcmpl-a" and out[0]["created"] == 7
    assert out[0]["choices"][0]["delta"] == {"content": "above "}
    assert out[1]["usage"] == {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}


def test_a_stream_cut_after_its_finish_only_takes_usage_from_the_continuation() -> None:
    request = parse_request("/v1/chat/completions", orjson.dumps({
        "model": "m1", "messages": [{"role": "user", "content": "hi"}], "stream": True,
        "stream_options": {"include_usage": True}, "max_tokens": 2}))
    relayed = _transcript(_delta("able "), _delta("about ", "length")).summary()
    plan = plan_continuation(request, None, relayed)
    assert isinstance(plan, Continuation) and plan.finished
    assert orjson.loads(plan.body)["max_tokens"] == 1  # engines refuse 0; its text is dropped
    splicer = Splicer(relayed, plan)
    data = (b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"extra "},'
            b'"finish_reason":"length"}]}\n\n'
            b'data: {"id":"x","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,'
            b'"total_tokens":10}}\n\ndata: [DONE]\n\n')
    out = splicer.rewrite(data)
    assert b"extra" not in out and out.endswith(b"data: [DONE]\n\n")
    usage = orjson.loads(out.split(b"\n\n")[0][6:])["usage"]
    assert usage == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}


# -- real processes ---------------------------------------------------------------------------

async def test_sigkill_mid_stream_under_load_every_stream_ends_whole_with_one_id_and_usage(
        start_sim, fleet: Fleet, start_router) -> None:
    # The doomed worker is slow (5 s answers) so its streams are surely mid-way when it dies,
    # however loaded the machine; its replacements are quicker.
    doomed = await start_sim("m1", "--ttft-ms", "5", "--itl-ms", "25", "--output-tokens", "200")
    others = [await start_sim("m1", *LONG) for _ in range(2)]
    await fleet.put_pool("p1", "m1")
    await fleet.put_route("m1", [{"pool": "p1"}])
    await fleet.add_worker(doomed, pool="p1")
    router = await start_router(no_auth=True)
    await router.wait_workers(1)
    client = router.client()
    # Phase 1: 8 streams on the doomed worker only, each with some tokens out; phase 2: the
    # other workers join, 16 more streams start, and the doomed worker is SIGKILLed.
    cut_prompts = [f"question number {i} about boats" for i in range(8)]
    load_prompts = [f"another question {i} about ships" for i in range(16)]
    underway = asyncio.Semaphore(0)

    async def killer() -> list[dict[str, object]]:
        for _ in cut_prompts:
            await underway.acquire()
        for sim in others:
            await fleet.add_worker(sim, pool="p1")
        await router.wait_workers(3)
        load = asyncio.gather(*[read_chat_stream(client, p) for p in load_prompts])
        await asyncio.sleep(0.05)
        assert (await doomed.stats())["running"] >= len(cut_prompts)
        doomed.proc.kill()
        return await load

    cut_results, load_results = await asyncio.gather(
        asyncio.gather(*[read_chat_stream(client, p, underway=underway) for p in cut_prompts]),
        killer())
    assert (await others[0].stats())["received"] + (await others[1].stats())["received"] >= 24
    for prompt, result in zip(cut_prompts + load_prompts, cut_results + load_results,
                              strict=True):
        assert result["text"] == expected_chat(prompt, 200), prompt
        assert result["finishes"] == ["stop"] and len(result["ids"]) == 1 and result["roles"] == 1
        usage = result["usage"]
        assert usage.completion_tokens == 200
        assert usage.prompt_tokens == len(prompt.split()) + 4
    resumed = await metric(router.url, 'flotilla_router_stream_resumes_total{outcome="resumed"}')
    assert resumed >= 8
    assert await metric(router.url, "flotilla_router_stream_errors_total") == 0


async def test_completions_stream_resumes_after_a_dying_engine_cuts_it(
        start_sim, fleet: Fleet, start_router) -> None:
    dying = await start_sim("m1", *PACED, "--abort-stream-after-tokens", "7")
    steady = await start_sim("m1", *PACED)
    await fleet.add_worker(dying, worker_id="dying")
    await fleet.add_worker(steady, worker_id="steady")
    router = await start_router(no_auth=True, policy="round_robin")
    await router.wait_workers(2)
    client = router.client()
    for i in range(4):
        prompt = f"Once upon a time {i}"
        stream = await client.completions.create(model="m1", prompt=prompt, stream=True,
                                                 stream_options={"include_usage": True})
        text, finishes, usage = "", [], None
        async for chunk in stream:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                text += choice.text
                if choice.finish_reason:
                    finishes.append(choice.finish_reason)
        assert text == expected_completion(prompt)
        assert finishes == ["stop"] and usage.completion_tokens == 40
    assert (await dying.stats())["aborted"] >= 1


async def test_a_worker_hung_past_the_idle_timeout_is_replaced_mid_stream(
        start_sim, fleet: Fleet, start_router) -> None:
    slow = ("--ttft-ms", "5", "--itl-ms", "30", "--output-tokens", "30")
    frozen = await start_sim("m1", *slow)
    other = await start_sim("m1", *slow)
    await fleet.add_worker(frozen, worker_id="frozen", queue_depth=0)
    await fleet.add_worker(other, worker_id="other", queue_depth=5)  # the frozen one is chosen
    router = await start_router(no_auth=True, idle_timeout_s=0.3, policy="lowest_queue_depth")
    await router.wait_workers(2)
    client = router.client()
    pid = frozen.proc.proc.pid

    async def freeze() -> None:
        await frozen.wait_stats(timeout=20, running=1)
        await asyncio.sleep(0.1)
        os.kill(pid, signal.SIGSTOP)

    try:
        result, _ = await asyncio.gather(read_chat_stream(client, "a frozen engine", max_tokens=25),
                                         freeze())
    finally:
        os.kill(pid, signal.SIGCONT)
    assert result["text"] == expected_chat("a frozen engine")[:len(result["text"])]
    assert len(result["text"].split()) == 25 and result["finishes"] == ["length"]
    assert result["usage"].completion_tokens == 25
    assert (await other.stats())["completed"] == 1


@pytest.mark.parametrize("setup", ["resume_off", "no_other_worker", "upstream_target"])
async def test_when_no_resume_is_possible_the_stream_ends_with_one_error_event(
        setup: str, start_sim, fleet: Fleet, start_router) -> None:
    dying = await start_sim("m1", *PACED, "--abort-stream-after-tokens", "5")
    await fleet.put_pool("p1", "m1")
    targets: list[dict[str, object]] = [{"pool": "p1"}]
    if setup == "upstream_target":  # another provider's answer would not continue this one
        targets = [{"upstream": dying.url + "/v1"}]
    await fleet.store.put_doc("routes", "m1", {"targets": targets,
                                               "stream_resume": setup != "resume_off"})
    await fleet.store.publish("routes")
    await fleet.add_worker(dying, pool="p1")
    if setup != "no_other_worker":
        await fleet.add_worker(await start_sim("m1", *PACED), pool="p1", queue_depth=50)
    router = await start_router(no_auth=True, policy="lowest_queue_depth")
    await router.wait_workers(1 if setup == "no_other_worker" else 2)
    await asyncio.sleep(0.3)  # the route's document is in the snapshot
    with pytest.raises(openai.APIError) as caught:
        await read_chat_stream(router.client(), "no luck")
    assert "interrupted" in str(caught.value.message)
    reason = {"resume_off": "disabled", "no_other_worker": "no_worker",
              "upstream_target": "upstream_target"}[setup]
    assert reason.replace("_", " ") in str(caught.value.message)
    assert await metric(
        router.url, f'flotilla_router_stream_resume_refusals_total{{reason="{reason}"}}') == 1
