"""The bursty request trace of the autoscaling benchmark, and its time compression.

The trace is a rate profile in *trace time* (minutes of a real day): phases with a start and end
rate in requests per second, linear in between. It is replayed compressed by a factor k: a phase
of m trace-minutes lasts 60 m / k real seconds, while the request *rate* (and every latency) stays
real - each replica serves what it would serve, only the durations of the phases and of the fleet's
reactions (boot, intervals, windows, idle timeout; see autoscaling_stack.py) are divided by k.

Arrivals are a non-homogeneous Poisson process in real time (thinning), seeded: the same seed and
factor give the same requests.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Phase:
    name: str
    minutes: float  # trace minutes
    start_rps: float
    end_rps: float


# A working day compressed to half an hour: light traffic, a ramp to a plateau, a spike of twice
# the plateau, a fall, an idle gap long enough to scale to zero, then traffic returning cold.
DEFAULT_PHASES = (
    Phase("quiet", 3, 1.5, 1.5),
    Phase("ramp", 5, 1.5, 8.0),
    Phase("plateau", 3, 8.0, 8.0),
    Phase("spike", 3, 16.0, 16.0),
    Phase("fall", 2, 3.0, 2.0),
    Phase("idle", 9, 0.0, 0.0),
    Phase("return", 5, 4.0, 4.0),
)


@dataclass(frozen=True)
class Arrival:
    index: int
    real_s: float  # offset from the start of the replay, real seconds
    trace_s: float  # the same instant in trace time
    phase: str


class Trace:
    def __init__(self, phases: tuple[Phase, ...], compression: float, seed: int) -> None:
        if compression <= 0:
            raise ValueError("compression must be > 0")
        self.phases = phases
        self.compression = compression
        self.seed = seed

    @property
    def trace_s(self) -> float:
        return sum(p.minutes for p in self.phases) * 60.0

    @property
    def real_s(self) -> float:
        return self.trace_s / self.compression

    @property
    def peak_rps(self) -> float:
        return max(max(p.start_rps, p.end_rps) for p in self.phases)

    def rate_at(self, trace_s: float) -> tuple[float, str]:
        """Offered requests per (real) second at `trace_s`, and the phase's name."""
        start = 0.0
        for phase in self.phases:
            end = start + phase.minutes * 60.0
            if trace_s < end:
                frac = (trace_s - start) / (end - start)
                return phase.start_rps + frac * (phase.end_rps - phase.start_rps), phase.name
            start = end
        return 0.0, self.phases[-1].name

    def arrivals(self) -> list[Arrival]:
        rng = np.random.default_rng(self.seed)
        peak = self.peak_rps
        out: list[Arrival] = []
        t = 0.0
        while True:
            t += float(rng.exponential(1.0 / peak))
            if t >= self.real_s:
                return out
            trace_s = t * self.compression
            rate, phase = self.rate_at(trace_s)
            if rng.random() < rate / peak:
                out.append(Arrival(len(out), t, trace_s, phase))

    def describe(self) -> dict[str, object]:
        return {"phases": [asdict(p) for p in self.phases], "compression": self.compression,
                "seed": self.seed, "trace_minutes": self.trace_s / 60.0,
                "real_seconds": self.real_s, "peak_rps": self.peak_rps}

    def save(self, directory: Path, stem: str = "autoscaling_trace") -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        arrivals = self.arrivals()
        profile = directory / f"{stem}.json"
        profile.write_text(json.dumps({**self.describe(), "requests": len(arrivals)},
                                      indent=2) + "\n")
        table = directory / f"{stem}.csv"
        with table.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["index", "real_s", "trace_s", "phase"])
            for a in arrivals:
                writer.writerow([a.index, f"{a.real_s:.4f}", f"{a.trace_s:.2f}", a.phase])
        return [profile, table]
