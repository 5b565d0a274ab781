"""The vLLM kind driven by the official openai SDK, sync and async, against a real process."""

from __future__ import annotations

import openai
import pytest

from tests.simulator.conftest import INSTANT, Sim
from tests.simulator.rawhttp import fetch

MODEL = "sim-model"
MESSAGES = [{"role": "user", "content": "Name a river."}]
ANSWER_TOKENS = 12


@pytest.fixture(scope="module")
def sim(shared_sim) -> Sim:
    return shared_sim(*INSTANT, "--output-tokens", str(ANSWER_TOKENS), "--seed", "7",
                      "--model", MODEL)


def test_models_lists_the_served_model(sim: Sim) -> None:
    models = sim.client().models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert models.data[0].owned_by == "vllm"


def test_chat_completion_has_text_usage_and_echoes_the_model(sim: Sim) -> None:
    response = sim.client().chat.completions.create(model=MODEL, messages=MESSAGES)
    choice = response.choices[0]
    assert response.id.startswith("chatcmpl-")
    assert response.model == MODEL
    assert choice.message.role == "assistant"
    assert len(choice.message.content.split()) == ANSWER_TOKENS
    assert choice.finish_reason == "stop"
    assert response.usage.completion_tokens == ANSWER_TOKENS
    assert response.usage.total_tokens == response.usage.prompt_tokens + ANSWER_TOKENS


def test_chat_stream_has_vllm_chunks_and_the_same_text(sim: Sim) -> None:
    client = sim.client()
    whole = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.model == MODEL for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c for c in chunks if c.choices]
    assert [c.choices[0].finish_reason for c in content[:-1]] == [None] * (len(content) - 1)
    assert content[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in content) == \
        whole.choices[0].message.content
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage.completion_tokens == ANSWER_TOKENS
    assert len(content) == 1 + ANSWER_TOKENS  # the role chunk, then one chunk per token


def test_without_include_usage_no_usage_chunk_is_sent(sim: Sim) -> None:
    chunks = list(sim.client().chat.completions.create(model=MODEL, messages=MESSAGES,
                                                       stream=True))
    assert all(c.choices for c in chunks)


def test_max_tokens_caps_the_answer_with_length(sim: Sim) -> None:
    response = sim.client().chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3)
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 3


def test_the_same_request_always_gets_the_same_text(sim: Sim) -> None:
    client = sim.client()
    texts = {client.chat.completions.create(model=MODEL, messages=MESSAGES)
             .choices[0].message.content for _ in range(3)}
    assert len(texts) == 1


async def test_async_completions_stream_and_whole_agree(sim: Sim) -> None:
    client = sim.async_client()
    whole = await client.completions.create(model=MODEL, prompt="The river", max_tokens=5)
    assert whole.id.startswith("cmpl-") and whole.object == "text_completion"
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 5
    stream = await client.completions.create(model=MODEL, prompt="The river", max_tokens=5,
                                             stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert len(texts) == 5
    assert "".join(texts) == whole.choices[0].text
    assert chunks[-1].usage.completion_tokens == 5
    await client.close()


async def test_async_chat_stream(sim: Sim) -> None:
    client = sim.async_client()
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert len(text.split()) == ANSWER_TOKENS
    await client.close()


def test_chat_continuation_resumes_the_same_answer(sim: Sim) -> None:
    client = sim.client()
    answer = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    full = answer.choices[0].message.content
    partial = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
    head = partial.choices[0].message.content
    rest = client.chat.completions.create(
        model=MODEL, messages=[*MESSAGES, {"role": "assistant", "content": head}],
        extra_body={"continue_final_message": True, "add_generation_prompt": False})
    assert head + rest.choices[0].message.content == full
    assert rest.usage.completion_tokens == ANSWER_TOKENS - 4
    # The continued turn is left open: the prompt grows by exactly the tokens already written.
    assert rest.usage.prompt_tokens == answer.usage.prompt_tokens + 4
    assert rest.choices[0].finish_reason == "stop"
    capped = client.chat.completions.create(
        model=MODEL, messages=[*MESSAGES, {"role": "assistant", "content": head}], max_tokens=2,
        extra_body={"continue_final_message": True, "add_generation_prompt": False})
    assert capped.usage.completion_tokens == 2
    assert full.startswith(head + capped.choices[0].message.content)


def test_completions_continuation_resumes_from_prompt_plus_partial(sim: Sim) -> None:
    client = sim.client()
    full = client.completions.create(model=MODEL, prompt="Once upon a time").choices[0].text
    head = client.completions.create(model=MODEL, prompt="Once upon a time",
                                     max_tokens=5).choices[0].text
    rest = client.completions.create(model=MODEL, prompt="Once upon a time" + head)
    assert head + rest.choices[0].text == full
    assert rest.usage.completion_tokens == ANSWER_TOKENS - 5


def test_continue_final_message_with_a_generation_prompt_is_refused(sim: Sim) -> None:
    with pytest.raises(openai.BadRequestError):
        sim.client().chat.completions.create(
            model=MODEL, messages=[*MESSAGES, {"role": "assistant", "content": "x"}],
            extra_body={"continue_final_message": True})


def test_unknown_model_is_vllm_404_with_an_integer_code(sim: Sim) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sim.client().chat.completions.create(model="gpt-nope", messages=MESSAGES)
    assert caught.value.response.json() == {"error": {
        "message": "The model `gpt-nope` does not exist.", "type": "NotFoundError",
        "param": "model", "code": 404}}


@pytest.mark.parametrize("body", [b'{"model": "sim-model", "messages": [', b"[1, 2]"])
def test_malformed_json_is_a_vllm_400(sim: Sim, body: bytes) -> None:
    response = sim.post("/v1/chat/completions", content=body,
                        headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 400 and error["type"] == "BadRequestError"


@pytest.mark.parametrize("body, param", [
    ({"model": MODEL}, "messages"),
    ({"model": MODEL, "messages": []}, "messages"),
    ({"model": MODEL, "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
    ({"model": MODEL, "messages": MESSAGES, "stream_options": {"include_usage": True}},
     "stream_options"),
])
def test_invalid_chat_requests_are_a_400_naming_the_parameter(sim: Sim, body: dict,
                                                              param: str) -> None:
    response = sim.post("/v1/chat/completions", body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_a_request_over_the_context_length_is_a_400(sim: Sim) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sim.client().completions.create(model=MODEL, prompt="word", max_tokens=10_000)
    assert "maximum context length is 4096 tokens" in caught.value.message


def test_unknown_paths_and_methods(sim: Sim) -> None:
    assert sim.get("/v1/nothing").status_code == 404
    response = sim.get("/v1/chat/completions")
    assert response.status_code == 405 and response.headers["allow"] == "POST"


async def test_every_sse_event_is_its_own_http_chunk(sim: Sim) -> None:
    response = await fetch(sim.port, "POST", "/v1/completions",
                           {"prompt": "x", "stream": True, "max_tokens": 5,
                            "stream_options": {"include_usage": True}})
    assert response.complete and response.headers["content-type"] == "text/event-stream"
    assert len(response.chunks) == 5 + 2  # five tokens, usage, [DONE]
    for chunk in response.chunks:
        assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n")
        assert chunk.count(b"data: ") == 1
    assert response.chunks[-1] == b"data: [DONE]\n\n"
