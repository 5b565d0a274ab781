"""Prometheus exposition with the imitated engines' exact metric names.

A small registry of our own rather than prometheus_client: the names must come out exactly as
each engine writes them - vLLM (prometheus_client) adds `_total` to counter samples, TEI (Rust
metrics-exporter-prometheus) does not - and the hot path only needs an attribute increment and a
bisect per observation. Gauges that mirror live state (running, waiting) are read at scrape time.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Sequence

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + pairs + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _GaugeChild:
    __slots__ = ("value", "function")

    def __init__(self) -> None:
        self.value = 0.0
        self.function: Callable[[], float] | None = None

    def set(self, value: float) -> None:
        self.value = value

    def set_function(self, function: Callable[[], float]) -> None:
        self.function = function

    def read(self) -> float:
        return self.function() if self.function is not None else self.value


class _HistogramChild:
    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; last is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1


class _Family:
    kind = ""

    def __init__(self, name: str, documentation: str, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.label_names = tuple(label_names)
        self._children: dict[tuple[str, ...], object] = {}

    def _new_child(self) -> object:
        raise NotImplementedError

    def _child(self, values: tuple[str, ...]) -> object:
        if len(values) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {values}")
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._new_child()
        return child

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.documentation}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class Counter(_Family):
    kind = "counter"

    def __init__(self, name: str, documentation: str, label_names: Sequence[str] = (), *,
                 sample_suffix: str = "_total") -> None:
        super().__init__(name, documentation, label_names)
        self.sample_suffix = sample_suffix

    def _new_child(self) -> _CounterChild:
        return _CounterChild()

    def header(self) -> list[str]:
        # prometheus_client's 0.0.4 text names the whole family `<name>_total`, HELP and TYPE too.
        name = self.name + self.sample_suffix
        return [f"# HELP {name} {self.documentation}", f"# TYPE {name} {self.kind}"]

    def labels(self, *values: str) -> _CounterChild:
        return self._child(values)  # type: ignore[return-value]

    def samples(self) -> list[str]:
        name = self.name + self.sample_suffix
        return [f"{name}{_labels(self.label_names, key)} {_number(child.value)}"  # type: ignore[attr-defined]
                for key, child in self._children.items()]


class Gauge(_Family):
    kind = "gauge"

    def _new_child(self) -> _GaugeChild:
        return _GaugeChild()

    def labels(self, *values: str) -> _GaugeChild:
        return self._child(values)  # type: ignore[return-value]

    def samples(self) -> list[str]:
        return [f"{self.name}{_labels(self.label_names, key)} {_number(child.read())}"  # type: ignore[attr-defined]
                for key, child in self._children.items()]


class Histogram(_Family):
    kind = "histogram"

    def __init__(self, name: str, documentation: str, buckets: Sequence[float],
                 label_names: Sequence[str] = ()) -> None:
        super().__init__(name, documentation, label_names)
        self.bounds = tuple(sorted(float(b) for b in buckets))

    def _new_child(self) -> _HistogramChild:
        return _HistogramChild(self.bounds)

    def labels(self, *values: str) -> _HistogramChild:
        return self._child(values)  # type: ignore[return-value]

    def samples(self) -> list[str]:
        lines = []
        names = (*self.label_names, "le")
        for key, child in self._children.items():
            assert isinstance(child, _HistogramChild)
            cumulative = 0
            for bound, count in zip((*self.bounds, math.inf), child.counts, strict=True):
                cumulative += count
                lines.append(f"{self.name}_bucket{_labels(names, (*key, _number(bound)))} "
                             f"{_number(cumulative)}")
            labels = _labels(self.label_names, key)
            lines.append(f"{self.name}_sum{labels} {_number(child.sum)}")
            lines.append(f"{self.name}_count{labels} {_number(child.count)}")
        return lines


class Registry:
    def __init__(self) -> None:
        self._families: list[_Family] = []

    def add(self, family: _Family) -> _Family:
        if any(f.name == family.name for f in self._families):
            raise ValueError(f"metric {family.name} is already registered")
        self._families.append(family)
        return family

    def counter(self, *args: object, **kwargs: object) -> Counter:
        return self.add(Counter(*args, **kwargs))  # type: ignore[arg-type,return-value]

    def gauge(self, *args: object, **kwargs: object) -> Gauge:
        return self.add(Gauge(*args, **kwargs))  # type: ignore[arg-type,return-value]

    def histogram(self, *args: object, **kwargs: object) -> Histogram:
        return self.add(Histogram(*args, **kwargs))  # type: ignore[arg-type,return-value]

    def render(self) -> bytes:
        lines: list[str] = []
        for family in self._families:
            lines += family.header()
            lines += family.samples()
        return ("\n".join(lines) + "\n").encode()
