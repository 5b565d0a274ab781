"""How hard is a request? A score in [0, 1] for routes with an `auto` target (small vs large).

    ComplexityScorer (protocol)      score(request) -> Score(value, features)
      └── HeuristicScorer            hand-written signals, combined as a noisy OR

A learned router (a small classifier over the same request) replaces the heuristic by implementing
the protocol and being registered in `SCORERS`; the router only ever calls `score()`.

The heuristic reads the text a model would read (chat: every message's text; completions: the
prompt) and the request's own parameters. Each signal is a strength in [0, 1] with a weight, the
chance it alone makes the request need the large model; they combine as a noisy OR,

    score = 1 - prod(1 - weight_i * strength_i)        then x (1 - 0.5 x simple-task strength)

so one strong signal (a proof, a code block) is enough, weak ones add up, and none can exceed 1.

    signal       strength                                                      weight
    length       log-scaled prompt tokens (~chars/4): 0 at <= 60, 1 at >= 1,500     0.45
    code         code fences, tracebacks, code keywords/punctuation (3 hits = 1)   0.75
    math         prove, derive, integral, probability, equations, LaTeX (1 hit)   0.85
    reasoning    "explain why", "step by step", "trade-offs", "design", ... (2 = 1) 0.75
    depth        user turns beyond the first (4 more = 1)                          0.40
    output       requested max_tokens: 0 at <= 300, 1 at >= 2,000                  0.70
    simple task  translate, fix typos, one word, what is the, define, ...        up to halves the
                 (only as far as no code, math or reasoning signal backs it)      score

Its agreement with hand-labelled prompts (tests/data/complexity_prompts.jsonl) is measured by
scripts/bench/complexity_agreement.py and reported in docs/routing-intelligence.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard

from router.inbound import ClientRequest


@dataclass(frozen=True, slots=True)
class Score:
    value: float  # 0 (trivial) .. 1 (needs the large model)
    features: dict[str, float] = field(default_factory=dict)  # for logs and tuning


class ComplexityScorer(Protocol):
    name: str

    def score(self, request: ClientRequest) -> Score: ...


def request_text(request: ClientRequest) -> tuple[str, int]:
    """(the text a model would read, user turns) of a chat or completions request."""
    payload = request.payload
    if request.kind == "chat":
        parts, turns = [], 0
        for message in payload.get("messages") or ():
            if not isinstance(message, dict):
                continue
            turns += message.get("role") == "user"
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(p["text"] for p in content
                             if isinstance(p, dict) and isinstance(p.get("text"), str))
        return "\n".join(parts), turns
    prompt = payload.get("prompt")
    if isinstance(prompt, list):
        prompt = "\n".join(p for p in prompt if isinstance(p, str))
    return (prompt if isinstance(prompt, str) else ""), 1


def _hits(pattern: re.Pattern[str], text: str) -> int:
    return len(pattern.findall(text))


_CODE = re.compile(
    r"```|Traceback \(most recent call last\)|\b(?:def|class|import|return|function|const|let|"
    r"var|async|await|fn|struct|impl|SELECT|CREATE TABLE|INSERT|#include|public static)\b|"
    r"=>|\)\s*\{|;\s*$|\w+\(\)|\b\w+(?:Error|Exception)\b|"
    r"\b(?:Python|Rust|Go|C\+\+|C#|JavaScript|TypeScript|Java|SQL|bash|shell)\b", re.MULTILINE)
_CODE_TASK = re.compile(r"\b(?:implement|write a (?:\w+ )?(?:program|function|script|query|class)|"
                        r"refactor|debug|optimi[sz]e|unit tests?|test cases?)\b", re.IGNORECASE)
_MATH = re.compile(
    r"\b(?:prove|proof|derive|derivation|integral|derivative|recurrence|theorem|lemma|"
    r"probability|expected value|variance|equations?|solutions?|complexity)\b|"
    r"\\(?:frac|int|sum)|\^\d|[∑∫√]", re.IGNORECASE)
_REASONING = re.compile(
    r"\b(?:why|explain|step by step|analy[sz]e|compare|trade-?offs?|design|architecture|"
    r"evaluate|reasoning|weigh|pros and cons|implications|strategy|plan|investigat\w*|"
    r"root causes?|in detail|detailed|comprehensive|recommend|generali[sz]e|walk me through|"
    r"propose)\b", re.IGNORECASE)
_SIMPLE = re.compile(
    r"\b(?:translate|typos?|synonym|one (?:word|sentence|line)|yes or no|spell|define|"
    r"what is the|who (?:wrote|is|was)|convert|sort|format|rewrite|list the|name a|classify|"
    r"extract|summari[sz]e in one)\b", re.IGNORECASE)


def _ramp(value: float, low: float, high: float) -> float:
    """0 at `low`, 1 at `high`, linear in between (log-scaled inputs are passed as logs)."""
    if value <= low:
        return 0.0
    if value >= high:
        return 1.0
    return (value - low) / (high - low)


class HeuristicScorer:
    name = "heuristic"
    weights = {"length": 0.45, "code": 0.75, "math": 0.85, "reasoning": 0.75, "depth": 0.40,
               "output": 0.70}

    def score(self, request: ClientRequest) -> Score:
        if request.kind == "embeddings":
            return Score(0.0)
        text, turns = request_text(request)
        tokens = max(1.0, len(text) / 4)
        max_tokens = request.payload.get("max_completion_tokens",
                                         request.payload.get("max_tokens"))
        features = {
            "length": _ramp(math.log(tokens), math.log(60), math.log(1500)),
            "code": min(1.0, (_hits(_CODE, text) + 2 * _hits(_CODE_TASK, text)) / 3),
            "math": min(1.0, float(_hits(_MATH, text))),
            "reasoning": min(1.0, _hits(_REASONING, text) / 2),
            "depth": min(1.0, max(0, turns - 1) / 4),
            "output": (_ramp(math.log(max_tokens), math.log(300), math.log(2000))
                       if _is_count(max_tokens) else 0.0),
        }
        keep = 1.0
        for name, strength in features.items():
            keep *= 1.0 - self.weights[name] * strength
        # A simple-task phrase ("translate", "what is the") discounts only what no hard signal
        # backs: "what is the probability ..., show the computation" stays hard.
        hard = max(features["code"], features["math"], features["reasoning"])
        simple = min(1.0, float(_hits(_SIMPLE, text))) * (1.0 - hard)
        features["simple"] = simple
        value = (1.0 - keep) * (1.0 - 0.5 * simple)
        return Score(round(value, 4), features)


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


SCORERS: dict[str, type] = {"heuristic": HeuristicScorer}


def make_scorer(name: str = "heuristic") -> ComplexityScorer:
    scorer: ComplexityScorer = SCORERS[name]()
    return scorer
