"""Deterministic text: an autoregressive toy language model over a fixed vocabulary.

A token is a word plus one trailing space. The next token is a pure function of the seed and of
the whole text so far (a running CRC-32 of the context, mixed, modulo the vocabulary), exactly
like greedy decoding of a real model. Two properties follow:

- the same request always gets the same text, and another `--seed` gives another text;
- continuation comes for free: the state after "context + first k answer tokens" is the state
  the generator had after emitting those k tokens, so it goes on with token k+1.

Every answer has `answer_tokens` tokens (`--output-tokens`) and ends with finish reason "stop";
a request's `max_tokens` cuts it short with "length". To know how much of an answer a
continuation request already holds:

- chat (`continue_final_message: true`): the trailing assistant message is replayed from the
  start of the answer. If it is a prefix of the answer (whole tokens, optionally ending inside a
  token), the rest of the answer is generated - the cut token's remainder first - and
  `max_tokens` counts only the new tokens. If it is not, the generator simply continues the given
  text as a fresh answer of full length.
- completions: the prompt is "original prompt + partial text". A prompt that does not end with
  whitespace is read as prompt + " " and its answer's first piece carries that space, so the
  answer never glues onto the prompt's last word and "original + partial" always ends with a
  space. For a prompt ending with whitespace, the longest run of trailing whole tokens that the
  generator itself would have produced (given everything before each one) is taken as the
  partial answer. Text a client relays from our stream is always whole tokens, so such a prompt
  resumes exactly. The one ambiguity: if the original prompt's last word is itself a vocabulary
  word that the generator would have chosen there (about 1 chance in 300), the resumed answer
  counts it as already written and ends one token early.

The key of a chat answer excludes a trailing assistant message, so "the same conversation" gives
the same answer whether or not the client already appended part of it.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

# Lower-case ASCII words only: JSON-encoding a token needs no escaping and is precomputed below.
VOCABULARY: tuple[str, ...] = tuple(
    """
    able about above across after again against along already also always among another answer
    around away back because become before began behind being below best better between beyond
    black blue body book both bring build built call came carry case cause center certain change
    city clear close cloud cold color come common could country course cover cross dark data day
    deep different direction distance does done door down draw during each early earth east easy
    edge either else energy enough even evening every example eye face fact fall family far fast
    field figure find fire first follow food force form found free friend front full game garden
    gather give glass good great green ground group grow half hand happen hard have head hear heat
    heavy help here high hold home hour house idea important inside island just keep kind king
    know land language large last late learn leave left less letter light line list little live
    long look machine made make many mark matter mean measure middle might mind minute model
    moment money moon morning most mountain move much music name near need never next night north
    note nothing notice number object ocean often open order other over page paper part pass
    people perhaps picture piece place plain plan plant point power present problem produce
    question quick rain reach read ready real record remember rest river road rock room round rule
    same science second sentence serve shape short show side simple since sing size slow small
    snow song sound south space speak special spring stand star start state still stone story
    street strong study such summer surface system table take tell test than that their then
    there thing think though thought through time today together toward travel tree true under
    unit until upon usual valley very voice wait walk warm watch water wave weather week well west
    where which while white whole wind winter with wonder wood word work world write year young
    """.split()
)
TOKENS: tuple[str, ...] = tuple(word + " " for word in VOCABULARY)
TOKEN_JSON: dict[str, bytes] = {token: orjson.dumps(token) for token in TOKENS}
_TOKEN_BYTES: tuple[bytes, ...] = tuple(token.encode() for token in TOKENS)
_TOKEN_SET = frozenset(TOKENS)
_SIZE = len(TOKENS)
# Answers already generated, by (state, length): benchmarks and tests repeat their prompts.
_MEMO_LIMIT = 4096
_MEMO_MAX_TOKENS = 4096


def _pick(state: int) -> int:
    # Fibonacci hashing: one multiply spreads CRC-32's (linear) bits before the modulo. It is the
    # costliest step of generation, hence the cheapest mixer that picks words evenly.
    return (state * 0x9E3779B1 >> 13) % _SIZE


@dataclass(frozen=True)
class Completion:
    """The new text of one answer: its pieces (one per streamed token) and why it ended."""

    pieces: tuple[str, ...]
    finish_reason: str  # "stop" (the answer is complete) or "length" (max_tokens reached)

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def count_words(text: str) -> int:
    """The simulator's token count of a text: its whitespace-separated words."""
    return len(text.split())


def message_text(content: Any) -> str:
    """The text of a chat message's content: a string, text parts, or None."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                parts.append(orjson.dumps(part).decode())
        return "".join(parts)
    return orjson.dumps(content).decode()


def chat_context(messages: Sequence[dict[str, Any]]) -> str:
    """The prompt a chat template would render, ending with the assistant's turn."""
    rendered = [f"<|{m.get('role')}|>{message_text(m.get('content'))}\n" for m in messages]
    return "".join(rendered) + "<|assistant|>"


class TextGenerator:
    def __init__(self, seed: int, answer_tokens: int) -> None:
        self._seed_state = zlib.crc32(f"flotilla-simulator seed={seed}\n".encode())
        self.answer_tokens = answer_tokens
        self._memo: dict[tuple[int, int], tuple[str, ...]] = {}

    def state_of(self, text: str, state: int | None = None) -> int:
        """The generator state after reading `text` (from the seed, or from `state`)."""
        return zlib.crc32(text.encode(), self._seed_state if state is None else state)

    def tokens(self, state: int, count: int) -> list[str]:
        """`count` tokens generated from `state`."""
        key = (state, count)
        known = self._memo.get(key)
        if known is not None:
            return list(known)
        out = []
        crc32 = zlib.crc32
        for _ in range(count):
            index = (state * 0x9E3779B1 >> 13) % _SIZE  # _pick, inlined on the hot path
            out.append(TOKENS[index])
            state = crc32(_TOKEN_BYTES[index], state)
        if count <= _MEMO_MAX_TOKENS:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = tuple(out)
        return out

    def _finish(self, state: int, done: int, first: str | None, max_tokens: int | None, *,
                ignore_eos: bool = False, lead: str = "") -> Completion:
        """The rest of an answer that already holds `done` tokens.

        `first` is the tail of a token the given text stopped inside; `lead` is put before the
        first new piece (the space between a prompt and its answer). With `ignore_eos` (vLLM's
        benchmarking option) exactly `max_tokens` are generated, past the answer's natural end.
        """
        remaining = max(self.answer_tokens - done, 0)
        if ignore_eos and max_tokens is not None:
            remaining = max_tokens + 1  # never reached: the answer ends on "length"
        budget = remaining if max_tokens is None else min(max_tokens, remaining)
        reason = "stop" if budget >= remaining else "length"
        if budget == 0:
            return Completion((), reason)
        if first is None:
            pieces = self.tokens(state, budget)
        else:
            pieces = [first, *self.tokens(state, budget - 1)]
        if lead:
            pieces[0] = lead + pieces[0]
        return Completion(tuple(pieces), reason)

    def chat(self, messages: Sequence[dict[str, Any]], *, continue_final: bool,
             max_tokens: int | None, ignore_eos: bool = False) -> Completion:
        """The answer to a conversation; with `continue_final`, the rest of the last message."""
        history = list(messages)
        partial = ""
        if history and history[-1].get("role") == "assistant":
            last = history.pop()
            if continue_final:
                partial = message_text(last.get("content"))
        state = self.state_of(chat_context(history))
        if not partial:
            return self._finish(state, 0, None, max_tokens, ignore_eos=ignore_eos)
        replay = self._replay(state, partial)
        if replay is None:
            # Not our answer: continue the given text like a model would, as a fresh answer.
            return self._finish(self.state_of(partial, state), 0, None, max_tokens,
                                ignore_eos=ignore_eos)
        state, done, first = replay
        return self._finish(state, done, first, max_tokens, ignore_eos=ignore_eos)

    def _replay(self, state: int, partial: str) -> tuple[int, int, str | None] | None:
        """Walk `partial` token by token: (state, tokens done, tail of a cut token) or None."""
        done = 0
        position = 0
        while position < len(partial):
            index = _pick(state)
            expected = TOKENS[index]
            piece = partial[position:position + len(expected)]
            if piece == expected:
                state = zlib.crc32(_TOKEN_BYTES[index], state)
                done += 1
                position += len(expected)
                continue
            if position + len(piece) == len(partial) and expected.startswith(piece):
                # The text stops inside this token: the answer goes on with its remainder, which
                # is the first new piece (so it counts as a new token, not a done one).
                state = zlib.crc32(_TOKEN_BYTES[index], state)
                return state, done, expected[len(piece):]
            return None
        return state, done, None

    def completion(self, prompt: str, *, max_tokens: int | None,
                   ignore_eos: bool = False) -> Completion:
        """The continuation of a text prompt (see the module docstring for resumed answers)."""
        if prompt and not prompt[-1].isspace():
            return self._finish(self.state_of(prompt + " "), 0, None, max_tokens,
                                ignore_eos=ignore_eos, lead=" ")
        state = self.state_of(prompt)
        return self._finish(state, self._trailing_answer_tokens(prompt), None, max_tokens,
                            ignore_eos=ignore_eos)

    def _trailing_answer_tokens(self, prompt: str) -> int:
        if not prompt.endswith(" "):
            return 0
        # Split the trailing run of vocabulary tokens off the prompt.
        run: list[str] = []
        end = len(prompt)
        while end > 0:
            start = prompt.rfind(" ", 0, end - 1) + 1
            token = prompt[start:end]
            if token not in _TOKEN_SET:
                break
            run.append(token)
            end = start
        if not run:
            return 0
        run.reverse()
        # Which of them the generator would have written, given everything before each one.
        state = self.state_of(prompt[:end])
        consistent = 0
        for token in run:
            consistent = consistent + 1 if TOKENS[_pick(state)] == token else 0
            state = zlib.crc32(token.encode(), state)
        return consistent
