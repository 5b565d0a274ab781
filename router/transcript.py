"""What a streamed response has relayed so far, kept cheaply and decoded only when needed.

The relay appends each batch of complete SSE events it sent to the client (a list append, no
parsing per event). From that record, on demand:

  - `usage()`       the `usage` object of the final chunk (`stream_options.include_usage`),
  - `ended_with_done()`  whether `data: [DONE]` was the last event,
  - `stream_id()`   the `id` shared by the stream's chunks,
  - `text_by_choice()`  the text relayed so far per choice index (chat `delta.content` or
                    completions `text`): what a continuation on another worker would re-send,
  - `summary()`     all of that in one pass, plus what decides whether a stream can be resumed
                    (tool-call deltas, finished choices, events that carried text).

Memory is bounded by `max_bytes` (default 1 MiB per stream); past it the oldest events are not
kept (`complete` turns False) but the tail needed for usage and [DONE] always is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

_DONE = b"data: [DONE]"
_TAIL_KEEP = 8  # batches always kept at the end (the usage chunk and [DONE] arrive last)


def iter_events(data: bytes) -> list[bytes]:
    """The `data:` payloads of complete SSE events in `data` (comments and other fields skipped)."""
    payloads = []
    for event in data.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
        if lines:
            payloads.append(b"\n".join(lines))
    return payloads


@dataclass(slots=True)
class Relayed:
    """What the client has received so far, decoded once (only when a stream needs resuming)."""

    stream_id: str | None = None
    created: int | None = None
    text: dict[int, str] = field(default_factory=dict)  # per choice index
    text_events: int = 0  # events that carried text: one per generated token in vLLM's streams
    finished: set[int] = field(default_factory=set)  # choices whose finish_reason was relayed
    tool_calls: bool = False  # a delta carried tool calls (not resumable as text)
    usage: bool = False  # the usage chunk was relayed
    done: bool = False  # `data: [DONE]` was relayed


class StreamTranscript:
    __slots__ = ("_batches", "_size", "max_bytes", "complete", "events")

    def __init__(self, max_bytes: int = 1 << 20) -> None:
        self._batches: list[bytes] = []
        self._size = 0
        self.max_bytes = max_bytes
        self.complete = True  # False once early events were dropped to respect max_bytes
        self.events = 0  # `data:` lines relayed (about one per generated token)

    def add(self, batch: bytes) -> None:
        self._batches.append(batch)
        self._size += len(batch)
        self.events += batch.count(b"data:")
        if self._size > self.max_bytes and len(self._batches) > _TAIL_KEEP:
            dropped = self._batches.pop(0)
            self._size -= len(dropped)
            self.complete = False

    def raw(self) -> bytes:
        """Everything kept, as relayed (the whole stream while `complete`)."""
        return b"".join(self._batches)

    def ended_with_done(self) -> bool:
        for batch in reversed(self._batches):
            stripped = batch.rstrip()
            if stripped:
                return stripped.endswith(_DONE)
        return False

    def _payloads(self) -> list[bytes]:
        return iter_events(b"".join(self._batches))

    def _decoded(self, payload: bytes) -> dict[str, Any] | None:
        if payload == b"[DONE]":
            return None
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        return data if isinstance(data, dict) else None

    def usage(self) -> dict[str, Any] | None:
        tail = iter_events(b"".join(self._batches[-_TAIL_KEEP:]))
        for payload in reversed(tail):
            data = self._decoded(payload)
            if data is not None and isinstance(data.get("usage"), dict):
                return data["usage"]
        return None

    def stream_id(self) -> str | None:
        for payload in self._payloads():
            data = self._decoded(payload)
            if data is not None and isinstance(data.get("id"), str):
                return data["id"]
        return None

    def text_by_choice(self) -> dict[int, str]:
        return self.summary().text

    def summary(self) -> Relayed:
        relayed = Relayed()
        parts: dict[int, list[str]] = {}
        for payload in self._payloads():
            if payload == b"[DONE]":
                relayed.done = True
                continue
            data = self._decoded(payload)
            if data is None:
                continue
            if relayed.stream_id is None and isinstance(data.get("id"), str):
                relayed.stream_id = data["id"]
                created = data.get("created")
                relayed.created = created if isinstance(created, int) else None
            if isinstance(data.get("usage"), dict):
                relayed.usage = True
            for choice in data.get("choices") or ():
                if not isinstance(choice, dict):
                    continue
                index = choice.get("index", 0)
                if not isinstance(index, int):
                    continue
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    text = delta.get("content")
                    if delta.get("tool_calls") or delta.get("function_call"):
                        relayed.tool_calls = True
                else:
                    text = choice.get("text")
                if isinstance(text, str) and text:
                    parts.setdefault(index, []).append(text)
                    relayed.text_events += 1
                if choice.get("finish_reason"):
                    relayed.finished.add(index)
        relayed.text = {index: "".join(texts) for index, texts in sorted(parts.items())}
        return relayed
