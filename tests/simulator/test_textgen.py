"""The deterministic text: same request same text, seeds differ, continuation resumes exactly."""

from __future__ import annotations

import pytest

from simulator.textgen import TOKENS, TextGenerator

QUESTION = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Tell me about rivers."}]


def make(seed: int = 0, answer_tokens: int = 16) -> TextGenerator:
    return TextGenerator(seed, answer_tokens)


def test_same_conversation_gets_the_same_answer_from_two_generators() -> None:
    first = make().chat(QUESTION, continue_final=False, max_tokens=None)
    second = make().chat(QUESTION, continue_final=False, max_tokens=None)
    assert first == second
    assert len(first.pieces) == 16
    assert first.finish_reason == "stop"
    assert all(piece in TOKENS for piece in first.pieces)


def test_another_seed_or_another_question_gives_another_answer() -> None:
    base = make(0).chat(QUESTION, continue_final=False, max_tokens=None).text
    assert make(1).chat(QUESTION, continue_final=False, max_tokens=None).text != base
    other = [{"role": "user", "content": "Tell me about lakes."}]
    assert make(0).chat(other, continue_final=False, max_tokens=None).text != base


def test_max_tokens_cuts_the_answer_with_finish_reason_length() -> None:
    full = make().chat(QUESTION, continue_final=False, max_tokens=None)
    cut = make().chat(QUESTION, continue_final=False, max_tokens=5)
    assert cut.pieces == full.pieces[:5]
    assert cut.finish_reason == "length"
    assert make().chat(QUESTION, continue_final=False, max_tokens=16).finish_reason == "stop"


def test_a_trailing_assistant_message_is_not_part_of_the_key() -> None:
    full = make().chat(QUESTION, continue_final=False, max_tokens=None)
    with_draft = [*QUESTION, {"role": "assistant", "content": "something else"}]
    assert make().chat(with_draft, continue_final=False, max_tokens=None) == full


@pytest.mark.parametrize("done", [0, 1, 7, 15, 16])
def test_chat_continuation_of_whole_tokens_completes_the_same_answer(done: int) -> None:
    gen = make()
    full = gen.chat(QUESTION, continue_final=False, max_tokens=None)
    partial = "".join(full.pieces[:done])
    rest = gen.chat([*QUESTION, {"role": "assistant", "content": partial}],
                    continue_final=True, max_tokens=None)
    assert partial + rest.text == full.text
    assert len(rest.pieces) == 16 - done
    assert rest.finish_reason == "stop"


@pytest.mark.parametrize("cut", [1, 9, 23, 40])
def test_chat_continuation_from_inside_a_token_finishes_that_token_first(cut: int) -> None:
    gen = make()
    full = gen.chat(QUESTION, continue_final=False, max_tokens=None).text
    rest = gen.chat([*QUESTION, {"role": "assistant", "content": full[:cut]}],
                    continue_final=True, max_tokens=None)
    assert full[:cut] + rest.text == full


def test_continuation_max_tokens_counts_only_new_tokens() -> None:
    gen = make()
    full = gen.chat(QUESTION, continue_final=False, max_tokens=None)
    partial = "".join(full.pieces[:4])
    rest = gen.chat([*QUESTION, {"role": "assistant", "content": partial}],
                    continue_final=True, max_tokens=3)
    assert rest.pieces == full.pieces[4:7]
    assert rest.finish_reason == "length"


def test_chat_continuation_of_foreign_text_is_a_fresh_full_answer() -> None:
    gen = make()
    rest = gen.chat([*QUESTION, {"role": "assistant", "content": "Rivers are long."}],
                    continue_final=True, max_tokens=None)
    assert len(rest.pieces) == 16
    assert rest.text != gen.chat(QUESTION, continue_final=False, max_tokens=None).text


@pytest.mark.parametrize("prompt", ["Once upon a time", "Tell me about the river", "Q: ", ""])
def test_completion_prompt_plus_partial_resumes_the_same_answer(prompt: str) -> None:
    gen = make(answer_tokens=12)
    full = gen.completion(prompt, max_tokens=None)
    assert len(full.pieces) == 12
    for done in range(13):
        partial = gen.completion(prompt, max_tokens=done)
        rest = gen.completion(prompt + partial.text, max_tokens=None)
        assert partial.text + rest.text == full.text
        assert len(partial.pieces) + len(rest.pieces) == 12
        assert rest.finish_reason == "stop"


def test_completion_answer_is_separated_from_a_prompt_ending_in_a_word() -> None:
    text = make().completion("Once upon a time", max_tokens=3).text
    assert text.startswith(" ") and not text.startswith("  ")


def test_ignore_eos_generates_exactly_max_tokens_past_the_natural_end() -> None:
    gen = make(answer_tokens=4)
    out = gen.completion("benchmark", max_tokens=64, ignore_eos=True)
    assert len(out.pieces) == 64
    assert out.finish_reason == "length"
    assert out.pieces[:4] == gen.completion("benchmark", max_tokens=None).pieces
