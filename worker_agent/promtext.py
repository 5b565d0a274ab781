"""A lean reader of the Prometheus text exposition format, for the few engine series we use.

An engine's `/metrics` page is mostly series the agent does not need (vLLM exposes a dozen
histograms with up to 30 buckets, plus process and Python metrics). `parse_samples` keeps only the
lines whose metric name is wanted and decodes labels only for those, which makes it several times
cheaper than building every family with `prometheus_client.parser` (measured by
`scripts/bench/engine_metrics_parse.py`; the tests check both parsers agree on real exposition
text). Format: `name{label="value",...} value [timestamp]`, `#` lines are comments or metadata,
label values escape `\\`, `\"` and `\n`.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


class ExpositionError(ValueError):
    """A line of the exposition text that does not follow the format."""


@dataclass(frozen=True, slots=True)
class Sample:
    labels: dict[str, str]
    value: float


def _labels(line: str, start: int) -> tuple[dict[str, str], int]:
    """Decode the label block opening at `line[start] == '{'`; return labels and the index after
    the closing brace."""
    labels: dict[str, str] = {}
    i = start + 1
    n = len(line)
    while True:
        while i < n and line[i] in " ,":
            i += 1
        if i < n and line[i] == "}":
            return labels, i + 1
        eq = line.find("=", i)
        if eq == -1 or eq + 1 >= n or line[eq + 1] != '"':
            raise ExpositionError(f"malformed label in: {line[:120]!r}")
        key = line[i:eq].strip()
        i = eq + 2
        chunks: list[str] = []
        while True:
            if i >= n:
                raise ExpositionError(f"unterminated label value in: {line[:120]!r}")
            quote = line.find('"', i)
            backslash = line.find("\\", i)
            if quote == -1:
                raise ExpositionError(f"unterminated label value in: {line[:120]!r}")
            if backslash == -1 or quote < backslash:
                chunks.append(line[i:quote])
                i = quote + 1
                break
            chunks.append(line[i:backslash])
            escaped = line[backslash + 1: backslash + 2]
            chunks.append(_ESCAPES.get(escaped, "\\" + escaped))
            i = backslash + 2
        labels[key] = "".join(chunks)


def _value(text: str, line: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ExpositionError(f"bad sample value {text!r} in: {line[:120]!r}") from None
    return value


def parse_samples(text: str, wanted: Collection[str]) -> dict[str, list[Sample]]:
    """The samples of every wanted metric name (histogram parts by their full names: `x_bucket`,
    `x_count`, `x_sum`), in page order. Names that do not appear are absent from the result."""
    out: dict[str, list[Sample]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] == "#":
            continue
        brace = line.find("{")
        space = line.find(" ")
        if brace != -1 and (space == -1 or brace < space):
            name = line[:brace]
            if name not in wanted:
                continue
            labels, end = _labels(line, brace)
            rest = line[end:].split()
        else:
            if space == -1:
                raise ExpositionError(f"sample without value: {line[:120]!r}")
            name = line[:space]
            if name not in wanted:
                continue
            labels = {}
            rest = line[space:].split()
        if not rest:
            raise ExpositionError(f"sample without value: {line[:120]!r}")
        out.setdefault(name, []).append(Sample(labels, _value(rest[0], line)))
    return out


def total(samples: dict[str, list[Sample]], name: str) -> float | None:
    """Sum of a metric's series (e.g. a gauge per engine core, a counter per finish reason);
    None when the engine does not expose it. NaN samples are skipped."""
    series = samples.get(name)
    if not series:
        return None
    values = [s.value for s in series if not math.isnan(s.value)]
    return math.fsum(values) if values else None


def mean(samples: dict[str, list[Sample]], name: str) -> float | None:
    """Mean of a metric's series (a fraction reported per engine core, like KV-cache usage)."""
    series = samples.get(name)
    if not series:
        return None
    values = [s.value for s in series if not math.isnan(s.value)]
    return math.fsum(values) / len(values) if values else None
