"""vLLM's OpenAI-compatible wire format: request validation and response bodies.

Validation follows vLLM's own rules and messages where a client could tell the difference
(unknown model 404, context length, `continue_final_message` with `add_generation_prompt`,
`stream_options` without `stream`). Sampling parameters (temperature, top_p, stop, ...) are
accepted and ignored: the text is deterministic (see textgen.py).

Streamed bodies are built from byte templates made once per request, so a token costs one bytes
concatenation; `data: {json}\\n\\n` events have vLLM's shape: the chat stream opens with a
`{"role": "assistant", "content": ""}` delta, the last content chunk carries `finish_reason`, an
optional usage chunk has `choices: []`, and `data: [DONE]` ends it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import orjson

from simulator.errors import RequestError
from simulator.textgen import TOKEN_JSON, Completion, count_words, message_text

DONE_EVENT = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class GenerationRequest:
    chat: bool
    model: str                      # echoed in the response
    stream: bool
    include_usage: bool
    max_tokens: int | None
    ignore_eos: bool
    prompt_tokens: int
    messages: list[dict[str, Any]] | None = None
    continue_final: bool = False
    prompt: str = ""


def _decode(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"Invalid JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError(400, "The request body must be a JSON object.")
    return data


def _flag(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(400, f"`{name}` must be a boolean, got {value!r}.", param=name)
    return value


def _positive_int(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(400, f"`{name}` must be an integer, got {value!r}.", param=name)
    if value < 1:
        raise RequestError(400, f"{name} must be at least 1, got {value}.", param=name)
    return value


def _common(data: dict[str, Any], served_model: str) -> tuple[str, bool, bool, bool]:
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError(400, f"`model` must be a string, got {model!r}.", param="model")
    if model is not None and model != served_model:
        raise RequestError(404, f"The model `{model}` does not exist.", param="model")
    stream = _flag(data, "stream", False)
    options = data.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise RequestError(400, "Stream options can only be defined when `stream=True`.",
                               param="stream_options")
        if not isinstance(options, dict):
            raise RequestError(400, "`stream_options` must be an object.", param="stream_options")
        include_usage = _flag(options, "include_usage", False)
    n = data.get("n")
    if n is not None and n != 1:
        raise RequestError(400, f"The simulator answers one choice per request (n=1), got n={n!r}.",
                           param="n")
    return model or served_model, stream, include_usage, _flag(data, "ignore_eos", False)


def _check_length(prompt_tokens: int, max_tokens: int | None, max_model_len: int,
                  what: str) -> None:
    if max_tokens is None:
        if prompt_tokens >= max_model_len:
            raise RequestError(
                400, f"This model's maximum context length is {max_model_len} tokens. However, "
                f"your request has {prompt_tokens} input tokens. Please reduce the length of the "
                f"input {what}.")
        return
    if prompt_tokens + max_tokens > max_model_len:
        raise RequestError(
            400, f"This model's maximum context length is {max_model_len} tokens. However, you "
            f"requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the {what}, "
            f"{max_tokens} in the completion). Please reduce the length of the {what} or "
            "completion.")


def parse_chat(body: bytes, served_model: str, max_model_len: int) -> GenerationRequest:
    data = _decode(body)
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "`messages` is required: a non-empty list of messages.",
                           param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise RequestError(400, f"messages[{index}] must be an object with a string `role`.",
                               param="messages")
    model, stream, include_usage, ignore_eos = _common(data, served_model)
    max_tokens = _positive_int(data, "max_completion_tokens") or _positive_int(data, "max_tokens")
    continue_final = _flag(data, "continue_final_message", False)
    if continue_final and _flag(data, "add_generation_prompt", True):
        raise RequestError(400, "Cannot set both `continue_final_message` and "
                           "`add_generation_prompt` to True.", param="continue_final_message")
    if continue_final and messages[-1].get("role") != "assistant":
        raise RequestError(400, "`continue_final_message` needs the last message to be the "
                           "assistant's partial answer.", param="continue_final_message")
    # A chat template adds a few tokens of markup around every message - except a continued
    # final message, left open like the generation prompt (uncounted) it stands for: so a
    # continuation's prompt is the original's plus exactly the tokens already generated.
    prompt_tokens = sum(count_words(message_text(m.get("content"))) + 4 for m in messages)
    if continue_final:
        prompt_tokens -= 4
    _check_length(prompt_tokens, max_tokens, max_model_len, "messages")
    return GenerationRequest(True, model, stream, include_usage, max_tokens, ignore_eos,
                             prompt_tokens, messages=messages, continue_final=continue_final)


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        return _prompt_text(prompt[0])
    if isinstance(prompt, list) and prompt and all(
            isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return " ".join(str(t) for t in prompt)  # token ids: one word per token
    raise RequestError(400, "`prompt` must be a string, one token-id list, or a list holding one "
                       "of those (the simulator serves one prompt per request).", param="prompt")


def parse_completion(body: bytes, served_model: str, max_model_len: int) -> GenerationRequest:
    data = _decode(body)
    if "prompt" not in data:
        raise RequestError(400, "`prompt` is required.", param="prompt")
    prompt = _prompt_text(data["prompt"])
    model, stream, include_usage, ignore_eos = _common(data, served_model)
    max_tokens = _positive_int(data, "max_tokens")
    prompt_tokens = max(count_words(prompt), 1)
    _check_length(prompt_tokens, max_tokens, max_model_len, "prompt")
    return GenerationRequest(False, model, stream, include_usage, max_tokens, ignore_eos,
                             prompt_tokens, prompt=prompt)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens}


class ResponseShape:
    """The bodies of one response: whole (non-streaming) or as SSE events."""

    def __init__(self, request: GenerationRequest) -> None:
        self.chat = request.chat
        self.id = ("chatcmpl-" if request.chat else "cmpl-") + os.urandom(16).hex()
        self.created = int(time.time())
        self.model = request.model
        object_name = b"chat.completion.chunk" if self.chat else b"text_completion"
        self._top = (b'{"id":"%b","object":"%b","created":%d,"model":%b'
                     % (self.id.encode(), object_name, self.created, orjson.dumps(self.model)))
        if self.chat:
            self._head = b"data: " + self._top + b',"choices":[{"index":0,"delta":{"content":'
            self._tail = b'},"logprobs":null,"finish_reason":null}]}\n\n'
            self._last = b'},"logprobs":null,"finish_reason":"%b","stop_reason":null}]}\n\n'
        else:
            self._head = b"data: " + self._top + b',"choices":[{"index":0,"text":'
            self._tail = b',"logprobs":null,"finish_reason":null,"stop_reason":null}]}\n\n'
            self._last = b',"logprobs":null,"finish_reason":"%b","stop_reason":null}]}\n\n'

    def role_event(self) -> bytes:
        return (b"data: " + self._top + b',"choices":[{"index":0,"delta":{"role":"assistant",'
                b'"content":""},"logprobs":null,"finish_reason":null}]}\n\n')

    def token_event(self, piece: str) -> bytes:
        encoded = TOKEN_JSON.get(piece) or orjson.dumps(piece)
        return self._head + encoded + self._tail

    def last_token_event(self, piece: str, finish_reason: str) -> bytes:
        encoded = TOKEN_JSON.get(piece) or orjson.dumps(piece)
        return self._head + encoded + self._last % finish_reason.encode()

    def usage_event(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        usage = orjson.dumps(_usage(prompt_tokens, completion_tokens))
        return b"data: " + self._top + b',"choices":[],"usage":' + usage + b"}\n\n"

    def whole(self, completion: Completion, prompt_tokens: int) -> bytes:
        generated = len(completion.pieces)
        choice: dict[str, Any]
        if self.chat:
            choice = {"index": 0,
                      "message": {"role": "assistant", "content": completion.text,
                                  "tool_calls": []},
                      "logprobs": None, "finish_reason": completion.finish_reason,
                      "stop_reason": None}
        else:
            choice = {"index": 0, "text": completion.text, "logprobs": None,
                      "finish_reason": completion.finish_reason, "stop_reason": None,
                      "prompt_logprobs": None}
        return orjson.dumps({
            "id": self.id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": _usage(prompt_tokens, generated),
        })
