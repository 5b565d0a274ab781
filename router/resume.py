"""Seamless mid-stream continuation: what to send another worker, and how to splice its answer.

When the worker serving a stream dies after bytes reached the client (crash, connection reset,
silence past the idle timeout), the relay (relay.py) asks another ready worker of the same pool
to go on with the same answer, and splices that continuation into the client's stream: the
client sees one stream with one `id`, one `finish_reason` per choice and one `usage`.

    the request                 continuation sent to the new worker
    chat                        messages + {"role": "assistant", "content": <text relayed>},
                                `continue_final_message: true`, `add_generation_prompt: false`
                                (vLLM's prefill); a client prefill (its own continue_final_message)
                                gets the relayed text appended instead
    completions (one string)    prompt + <text relayed>
    both                        `max_tokens` / `max_completion_tokens` minus the text events
                                relayed (one token each in vLLM's streams)

    not resumable (the relay falls back to the SPEC's single SSE error event)
    several choices (n > 1), tool-call deltas relayed, `echo`, structured output (the grammar
    would restart inside the answer), a prompt that is not one string, a transcript that dropped
    its beginning (over 1 MiB relayed), an upstream target (another provider's answer would not
    continue this one) - each counted by reason in `flotilla_router_stream_resume_refusals_total`.

The splice (`Splicer`), applied only to the continuation's events (the hot path of a healthy
stream is untouched): every chunk takes the original `id` and `created`; the continuation's
opening role delta is dropped (the client already had one); choices whose `finish_reason` was
already relayed are dropped (only `usage` and `[DONE]` were missing); `usage` is rewritten to cover
the whole answer: the continuation's prompt counted the relayed text, so

    prompt_tokens     = continuation prompt_tokens - tokens relayed
    completion_tokens = tokens relayed + continuation completion_tokens

(`total_tokens` is unchanged: the continuation saw the same tokens, split differently).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from router.inbound import ClientRequest
from router.transcript import Relayed, iter_events

# Refusal reasons (a bounded label set).
SEVERAL_CHOICES = "several_choices"
TOOL_CALLS = "tool_calls"
ECHO = "echo"
STRUCTURED_OUTPUT = "structured_output"
PROMPT_SHAPE = "prompt_shape"
TRANSCRIPT_INCOMPLETE = "transcript_incomplete"
UPSTREAM_TARGET = "upstream_target"
DISABLED = "disabled"
NO_WORKER = "no_worker"
LIMIT_REACHED = "limit_reached"
REFUSALS = (SEVERAL_CHOICES, TOOL_CALLS, ECHO, STRUCTURED_OUTPUT, PROMPT_SHAPE,
            TRANSCRIPT_INCOMPLETE, UPSTREAM_TARGET, DISABLED, NO_WORKER, LIMIT_REACHED)

_STRUCTURED = ("guided_json", "guided_regex", "guided_choice", "guided_grammar",
               "structured_outputs")


@dataclass(frozen=True, slots=True)
class Continuation:
    body: bytes  # the request for the next worker
    sent_tokens: int  # tokens the client already has (text events relayed)
    finished: bool  # every choice already ended: only usage and [DONE] are missing


def _several_choices(payload: dict[str, Any]) -> bool:
    for name in ("n", "best_of"):
        value = payload.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            return True
    return False


def _structured(payload: dict[str, Any]) -> bool:
    fmt = payload.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        return True
    return any(payload.get(name) is not None for name in _STRUCTURED)


def _budget(payload: dict[str, Any], sent: int) -> None:
    """Reduce the token budget by what was relayed (at least 1: engines refuse 0)."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = payload.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            payload[name] = max(1, value - sent)


def plan_continuation(request: ClientRequest, model: str | None,
                      relayed: Relayed) -> Continuation | str:
    """The continuation request for a broken stream, or the reason it cannot be resumed.

    `model` is the model the target sends upstream (a pool's rewrite), None to keep the client's.
    """
    payload = dict(request.payload)
    if _several_choices(payload) or any(i != 0 for i in relayed.text) or any(
            i != 0 for i in relayed.finished):
        return SEVERAL_CHOICES
    if relayed.tool_calls:
        return TOOL_CALLS
    if _structured(payload):
        return STRUCTURED_OUTPUT
    if model is not None:
        payload["model"] = model
    text = relayed.text.get(0, "")
    sent = relayed.text_events
    if request.kind == "chat":
        messages = list(payload["messages"])
        last = messages[-1] if messages else None
        prefilled = (payload.get("continue_final_message") is True and isinstance(last, dict)
                     and last.get("role") == "assistant"
                     and isinstance(last.get("content"), str))
        if prefilled:
            assert isinstance(last, dict)
            messages[-1] = {**last, "content": last["content"] + text}
        elif text:
            messages.append({"role": "assistant", "content": text})
        if prefilled or text:
            payload["messages"] = messages
            payload["continue_final_message"] = True
            payload["add_generation_prompt"] = False
    elif request.kind == "completions":
        if payload.get("echo"):
            return ECHO
        prompt = payload.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            return PROMPT_SHAPE
        payload["prompt"] = prompt + text
    else:
        return PROMPT_SHAPE
    _budget(payload, sent)
    return Continuation(body=orjson.dumps(payload), sent_tokens=sent,
                        finished=0 in relayed.finished)


class Splicer:
    """Rewrites a continuation's SSE events into the client's stream (see the module docstring).

    Events are decoded and re-encoded here, which a healthy stream never pays for.
    """

    __slots__ = ("stream_id", "created", "sent_tokens", "finished", "_opened")

    def __init__(self, relayed: Relayed, continuation: Continuation) -> None:
        self.stream_id = relayed.stream_id
        self.created = relayed.created
        self.sent_tokens = continuation.sent_tokens
        self.finished = continuation.finished
        self._opened = False  # the continuation's opening role delta was seen

    def rewrite(self, data: bytes) -> bytes:
        """Complete SSE events in, the events to relay out (possibly none: b"")."""
        out = []
        for payload in iter_events(data):
            if payload == b"[DONE]":
                out.append(b"data: [DONE]\n\n")
                continue
            try:
                event = orjson.loads(payload)
            except orjson.JSONDecodeError:
                out.append(b"data: " + payload + b"\n\n")
                continue
            if isinstance(event, dict) and "error" not in event:
                event = self._event(event)
                if event is None:
                    continue
            out.append(b"data: " + orjson.dumps(event) + b"\n\n")
        return b"".join(out)

    def _event(self, event: dict[str, Any]) -> dict[str, Any] | None:
        if self.stream_id is not None and "id" in event:
            event["id"] = self.stream_id
        if self.created is not None and "created" in event:
            event["created"] = self.created
        choices = event.get("choices")
        if isinstance(choices, list) and choices:
            kept = [c for c in (self._choice(c) for c in choices) if c is not None]
            if not kept and not isinstance(event.get("usage"), dict):
                return None
            event["choices"] = kept
        usage = event.get("usage")
        if isinstance(usage, dict):
            event["usage"] = self._usage(usage)
        return event

    def _choice(self, choice: Any) -> Any:
        if not isinstance(choice, dict):
            return choice
        if self.finished:
            return None  # the client already has this choice's end
        delta = choice.get("delta")
        if isinstance(delta, dict) and "role" in delta and not self._opened:
            self._opened = True
            rest = {k: v for k, v in delta.items() if k != "role"}
            if not rest.get("content") and len(rest) <= 1 and not choice.get("finish_reason"):
                return None  # the opening `{"role": "assistant", "content": ""}` event
            choice = {**choice, "delta": rest}
        return choice

    def _usage(self, usage: dict[str, Any]) -> dict[str, Any]:
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        if not isinstance(prompt, int) or not isinstance(completion, int):
            return usage
        sent = self.sent_tokens
        new = 0 if self.finished else completion
        fixed = dict(usage)
        fixed["prompt_tokens"] = max(0, prompt - sent)
        fixed["completion_tokens"] = sent + new
        fixed["total_tokens"] = fixed["prompt_tokens"] + fixed["completion_tokens"]
        return fixed
