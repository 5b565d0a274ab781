"""Figures of the autoscaling benchmark: the per-run summary, the markdown table and the plot."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class RequestResult:
    real_s: float  # when it was sent, from the start of the replay
    phase: str
    ttft_s: float | None  # client-side, first content token of the stream
    error: str | None = None

    def within(self, slo_ms: float) -> bool:
        return self.error is None and self.ttft_s is not None and self.ttft_s * 1000 <= slo_ms


@dataclass
class RunResult:
    policy: str
    label: str
    compression: float
    slo_ms: float
    requests: list[RequestResult] = field(default_factory=list)
    # (real seconds since start, ready replicas, live instances, desired)
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    ledger_gpu_hours_real: float = 0.0  # from the cost ledger ($1/h per replica)
    scale_ups: int = 0
    scale_downs: int = 0
    launched: int = 0
    boot_s_real: list[float] = field(default_factory=list)  # launch -> ready per instance
    leftover_pids: list[int] = field(default_factory=list)
    first_zero_trace_s: float | None = None

    def summary(self) -> dict[str, Any]:
        k = self.compression
        total = len(self.requests)
        failed = [r for r in self.requests if r.error is not None]
        ttfts = [r.ttft_s for r in self.requests if r.ttft_s is not None and r.error is None]
        within = sum(1 for r in self.requests if r.within(self.slo_ms))
        phases: dict[str, dict[str, Any]] = {}
        for r in self.requests:
            row = phases.setdefault(r.phase, {"requests": 0, "within_slo": 0, "failed": 0})
            row["requests"] += 1
            row["within_slo"] += r.within(self.slo_ms)
            row["failed"] += r.error is not None
        sampled = _integrate(self.samples) / 3600.0
        return {
            "policy": self.policy, "label": self.label,
            "requests": total, "failed": len(failed),
            "within_slo": within, "slo_share": within / total if total else None,
            "ttft_p50_ms": _pct(ttfts, 50), "ttft_p95_ms": _pct(ttfts, 95),
            "ttft_p99_ms": _pct(ttfts, 99),
            "gpu_hours": self.ledger_gpu_hours_real * k,
            "gpu_hours_from_samples": sampled * k,
            "scale_ups": self.scale_ups, "scale_downs": self.scale_downs,
            "instances_launched": self.launched,
            "max_live_replicas": max((s[2] for s in self.samples), default=0),
            "boot_median_trace_s": statistics.median(self.boot_s_real) * k
            if self.boot_s_real else None,
            "reached_zero_at_trace_min": None if self.first_zero_trace_s is None
            else self.first_zero_trace_s / 60.0,
            "per_phase": phases,
            "errors": sorted({r.error for r in failed if r.error})[:5],
            "leftover_pids": self.leftover_pids,
        }


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q) * 1000.0) if values else None


def _integrate(samples: list[tuple[float, int, int, int]]) -> float:
    """Instance-seconds under the sampled live count (step function)."""
    total = 0.0
    for (t0, _r, live, _d), (t1, *_rest) in zip(samples, samples[1:], strict=False):
        total += live * (t1 - t0)
    return total


def ratios(summaries: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    static = next((s for s in summaries if s["policy"] == "static"), None)
    out: dict[str, dict[str, float | None]] = {}
    for s in summaries:
        gpu = None
        if static and static["gpu_hours"]:
            gpu = s["gpu_hours"] / static["gpu_hours"]
        out[s["label"]] = {"gpu_hours_vs_static": gpu, "slo_share": s["slo_share"]}
    return out


def markdown_table(summaries: list[dict[str, Any]], slo_ms: float) -> str:
    static = next((s for s in summaries if s["policy"] == "static"), None)
    head = (f"| policy | GPU-hours (trace) | vs static | requests within TTFT {slo_ms:.0f} ms "
            "| TTFT p50 / p95 (ms) | failed | scale-ups / downs | instances launched "
            "| most replicas | median boot (trace s) | at zero from (trace min) |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for s in summaries:
        vs = (f"{s['gpu_hours'] / static['gpu_hours']:.2f}x"
              if static and static["gpu_hours"] else "-")
        share = "-" if s["slo_share"] is None else f"{s['slo_share']:.1%}"
        p50 = "-" if s["ttft_p50_ms"] is None else f"{s['ttft_p50_ms']:.0f}"
        p95 = "-" if s["ttft_p95_ms"] is None else f"{s['ttft_p95_ms']:.0f}"
        zero = "-" if s["reached_zero_at_trace_min"] is None \
            else f"{s['reached_zero_at_trace_min']:.1f}"
        boot = "-" if s["boot_median_trace_s"] is None else f"{s['boot_median_trace_s']:.0f}"
        rows.append(f"| {s['label']} | {s['gpu_hours']:.2f} | {vs} | {share} "
                    f"({s['within_slo']}/{s['requests']}) | {p50} / {p95} | {s['failed']} "
                    f"| {s['scale_ups']} / {s['scale_downs']} | {s['instances_launched']} "
                    f"| {s['max_live_replicas']} | {boot} | {zero} |")
    return head + "\n".join(rows) + "\n"


def plot(runs: list[RunResult], trace: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = trace.compression
    fig, axes = plt.subplots(len(runs), 1, figsize=(9, 2.6 * len(runs)), sharex=True,
                             squeeze=False)
    minutes = np.linspace(0, trace.trace_s, 600)
    load = [trace.rate_at(t)[0] for t in minutes]
    top = max([max((s[2] for s in r.samples), default=0) for r in runs] + [1]) + 1
    for ax, run in zip(axes[:, 0], runs, strict=True):
        t = [s[0] * k / 60 for s in run.samples]
        ax.step(t, [s[2] for s in run.samples], where="post", label="live replicas",
                color="tab:blue")
        ax.step(t, [s[1] for s in run.samples], where="post", label="ready replicas",
                color="tab:green", linestyle="--")
        ax.set_ylim(0, top)
        ax.set_ylabel("replicas")
        summary = run.summary()
        share = summary["slo_share"]
        ax.set_title(f"{run.label}: {summary['gpu_hours']:.2f} GPU-h, "
                     f"{'-' if share is None else f'{share:.1%}'} within TTFT SLO",
                     fontsize=10)
        twin = ax.twinx()
        twin.fill_between(minutes / 60, load, color="tab:orange", alpha=0.2,
                          label="offered load")
        twin.set_ylabel("req/s", color="tab:orange")
        twin.set_ylim(0, trace.peak_rps * 1.15)
        if ax is axes[0, 0]:
            lines = ax.get_legend_handles_labels()
            extra = twin.get_legend_handles_labels()
            ax.legend(lines[0] + extra[0], lines[1] + extra[1], loc="upper right",
                      fontsize=8)
    axes[-1, 0].set_xlabel(f"trace minutes (replayed {k:g}x faster)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
