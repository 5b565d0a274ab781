"""Tables (Markdown) and plots (one PNG per figure) from the peer benchmark's results.

Ratios come first: absolute times move with the shared machine's load, ratios between systems
measured in the same session much less. The reference of a ratio is Flotilla's router ("x router").
"""

from __future__ import annotations

import math
from pathlib import Path

from peer_systems import LABELS

REFERENCE = "router"


def _rows(results: dict[str, object], phase: str) -> list[tuple[str, dict[str, float]]]:
    systems: dict[str, dict[str, object]] = results["systems"]  # type: ignore[assignment]
    return [(key, data[phase]) for key, data in systems.items() if phase in data]  # type: ignore


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or reference is None or not reference or math.isnan(value):
        return "-"
    return f"{value / reference:.2f}x"


def _num(value: object, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def _conns(row: dict[str, float]) -> str:
    connections = int(row.get("connections", 32))
    return "" if connections == 32 else f" (at {connections} conns)"


def tables(results: dict[str, object]) -> str:
    systems: dict[str, dict[str, dict[str, float]]] = results["systems"]  # type: ignore
    ref_cpu = systems.get(REFERENCE, {}).get("cpu", {})
    out: list[str] = []

    cpu = _rows(results, "cpu")
    if cpu:
        out += ["| system | CPU µs / request | x router | CPU µs / streamed chunk | x router | "
                "peak RSS (MiB) | x router | req/s (wrk, 32 conns) | wrk errors |",
                "|---|---|---|---|---|---|---|---|---|"]
        for key, row in cpu:
            out.append(
                f"| {LABELS[key]} | {_num(row.get('cpu_us_per_request'), '.0f')} | "
                f"{_ratio(row.get('cpu_us_per_request'), ref_cpu.get('cpu_us_per_request'))} | "
                f"{_num(row.get('cpu_us_per_chunk'), '.1f')} | "
                f"{_ratio(row.get('cpu_us_per_chunk'), ref_cpu.get('cpu_us_per_chunk'))} | "
                f"{_num(row.get('peak_rss_mib'), '.0f')} | "
                f"{_ratio(row.get('peak_rss_mib'), ref_cpu.get('peak_rss_mib'))} | "
                f"{row['rps']:.0f}{_conns(row)} | "
                f"{int(row['errors']) + int(row['stream_errors'])} |")
        out.append("")

    latency = _rows(results, "latency")
    if latency:
        out += ["| system | added TTFT p50 / p99 (ms) | added end-to-end p50 / p99 (ms) | "
                "paired median added TTFT (ms) | direct TTFT p50 / p99 (ms) | pairs | failed |",
                "|---|---|---|---|---|---|---|"]
        for key, row in latency:
            out.append(
                f"| {LABELS[key]} | {row['added_ttft_p50_ms']:+.2f} / "
                f"{row['added_ttft_p99_ms']:+.2f} | {row['added_total_p50_ms']:+.2f} / "
                f"{row['added_total_p99_ms']:+.2f} | {row['added_ttft_paired_median_ms']:+.2f} | "
                f"{row['direct_ttft_p50_ms']:.1f} / {row['direct_ttft_p99_ms']:.1f} | "
                f"{row['pairs']} | {row['failed']} |")
        out.append("")

    balance = _rows(results, "balance")
    if balance:
        ref = dict(balance).get("direct", {})
        out += ["| system | share of requests to the slow worker | p50 (ms) | p99 (ms) | "
                "p99 x client round-robin | requests | failed |",
                "|---|---|---|---|---|---|---|"]
        for key, row in balance:
            out.append(
                f"| {LABELS[key]} | {100 * row['slow_share']:.0f} % | {row['p50_ms']:.0f} | "
                f"{row['p99_ms']:.0f} | {_ratio(row['p99_ms'], ref.get('p99_ms'))} | "
                f"{row['requests']} | {row['failed']} |")
        out.append("")

    failover = _rows(results, "failover")
    if failover:
        out += ["| system | requests | client errors | in flight at the kill (of which "
                "streams) | sent after the kill | errors among those sent after | kinds |",
                "|---|---|---|---|---|---|---|"]
        for key, row in failover:
            kinds = ", ".join(f"{k}: {v}" for k, v in row["failure_kinds"].items()) or "-"  # type: ignore[attr-defined]
            out.append(
                f"| {LABELS[key]} | {row['requests']} | {row['errors']} | "
                f"{row['errors_in_flight_at_kill']} ({row.get('streams_cut_in_flight', '-')}) | "
                f"{row['sent_after_kill']} | "
                f"{row['errors_after_kill']} | {kinds} |")
        out.append("")

    skipped: dict[str, str] = results.get("skipped") or {}  # type: ignore[assignment]
    for key, reason in skipped.items():
        out.append(f"- skipped {LABELS[key]}: {reason}")
    return "\n".join(out).rstrip()


def plots(results: dict[str, object], out: Path) -> list[Path]:
    """One PNG per figure; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []

    def save(fig: object, name: str) -> None:
        path = out / name
        fig.tight_layout()  # type: ignore[attr-defined]
        fig.savefig(path, dpi=110)  # type: ignore[attr-defined]
        plt.close(fig)  # type: ignore[arg-type]
        written.append(path)

    def bars(ax: object, labels: list[str], series: dict[str, list[float]],
             notes: list[str] | None = None) -> None:
        width = 0.8 / max(1, len(series))
        for i, (name, values) in enumerate(series.items()):
            xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))]
            drawn = ax.bar(xs, values, width, label=name)  # type: ignore[attr-defined]
            texts = notes or [f"{v:.3g}" for v in values]
            ax.bar_label(drawn, labels=texts, fontsize=7)  # type: ignore[attr-defined]
        ax.set_xticks(range(len(labels)), labels, rotation=15, fontsize=8)  # type: ignore
        if len(series) > 1:
            ax.legend(fontsize=8)  # type: ignore[attr-defined]

    cpu = [(k, r) for k, r in _rows(results, "cpu") if "cpu_us_per_request" in r]
    for metric, name, title, log in (
            ("cpu_us_per_request", "cpu_per_request.png", "CPU per request (µs, log scale)", True),
            ("cpu_us_per_chunk", "cpu_per_chunk.png", "CPU per streamed chunk (µs, log scale)",
             True),
            ("peak_rss_mib", "peak_rss.png", "Peak RSS of the process tree (MiB)", False)):
        if not cpu:
            break
        fig, ax = plt.subplots(figsize=(7, 3.6))
        values = [r[metric] for _, r in cpu]
        reference = dict(cpu).get(REFERENCE, {}).get(metric)
        notes = [f"{v:.3g}" + (f" ({v / reference:.2f}x)" if reference else "") for v in values]
        bars(ax, [LABELS[k] for k, _ in cpu], {metric: values}, notes)
        if log:
            ax.set_yscale("log")
        ax.set_title(title)
        save(fig, name)

    latency = _rows(results, "latency")
    if latency:
        fig, ax = plt.subplots(figsize=(7.5, 3.8))
        bars(ax, [LABELS[k] for k, _ in latency], {
            "TTFT p50": [r["added_ttft_p50_ms"] for _, r in latency],
            "TTFT p99": [r["added_ttft_p99_ms"] for _, r in latency],
            "end-to-end p50": [r["added_total_p50_ms"] for _, r in latency],
            "end-to-end p99": [r["added_total_p99_ms"] for _, r in latency]})
        ax.set_yscale("symlog", linthresh=1.0)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_title("Added latency vs direct in the same window (ms, symlog)")
        save(fig, "added_latency.png")

    balance = _rows(results, "balance")
    if balance:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
        labels = [LABELS[k] for k, _ in balance]
        bars(left, labels, {"slow worker share (%)": [100 * r["slow_share"] for _, r in balance]})
        left.axhline(25, color="grey", linestyle="--", linewidth=0.8)
        left.set_title("Share of requests sent to the 3x slower worker (%)")
        bars(right, labels, {"p50": [r["p50_ms"] for _, r in balance],
                             "p99": [r["p99_ms"] for _, r in balance]})
        right.set_title("Client latency on unequal workers (ms)")
        save(fig, "balancing.png")

    failover = _rows(results, "failover")
    if failover:
        fig, ax = plt.subplots(figsize=(7, 3.6))
        bars(ax, [LABELS[k] for k, _ in failover], {
            "in flight at the kill": [r["errors_in_flight_at_kill"] for _, r in failover],
            "sent after the kill": [r["errors_after_kill"] for _, r in failover]})
        ax.set_title("Client-visible errors when one of two workers is SIGKILLed")
        save(fig, "failover.png")
    return written
