"""Run the chaos suite and render its figures into docs/reliability.md.

    python scripts/chaos_report.py              # run tests/chaos (-m chaos), then render
    python scripts/chaos_report.py --no-run     # render what build/chaos/ already holds
    make chaos                                  # the same as the first line

Each scenario writes `<results>/<scenario>.json` (tests/chaos/conftest.py); this script puts one
table row per scenario between the `chaos:begin` / `chaos:end` markers of docs/reliability.md,
leaving every other section of that page alone. The exit status is pytest's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- chaos:begin -->", "<!-- chaos:end -->"
ORDER = ["worker_sigkilled", "worker_hanging", "network_to_one_worker_stalls",
         "spot_notice_on_half_the_fleet", "redis_restarted_empty", "control_plane_restarted",
         "router_replica_killed_behind_two", "router_replica_stopped_gracefully"]


def run_suite(results: Path, extra: list[str]) -> int:
    results.mkdir(parents=True, exist_ok=True)
    for old in results.glob("*.json"):
        old.unlink()
    env = {**os.environ, "FLOTILLA_CHAOS_RESULTS": str(results)}
    command = [sys.executable, "-m", "pytest", "-q", "-m", "chaos", "tests/chaos", *extra]
    print("+", " ".join(command), flush=True)
    started = time.monotonic()
    code = subprocess.call(command, cwd=ROOT, env=env)
    print(f"chaos suite: exit {code} in {time.monotonic() - started:.0f} s", flush=True)
    return code


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items())) or "-"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _value(value: Any) -> str:
    if isinstance(value, dict):  # Prometheus samples: short names, no zeros
        return ", ".join(f"{k.removeprefix('flotilla_router_').replace('_total', '')} {v:g}"
                         for k, v in sorted(value.items())) or "none"
    return str(value)


def _observations(observed: dict[str, Any]) -> str:
    return "; ".join(f"{k.replace('_', ' ')}: {_value(v)}" for k, v in observed.items())


def render(documents: list[dict[str, Any]]) -> str:
    rows = ["| scenario | sent (streamed) | ok | failed, by reason | stream error events | "
            "streams cut | silent / garbled / hung | p99 before (s) | p99 during fault (s) |",
            "|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for doc in documents:
        f = doc["figures"]
        rows.append(
            f"| {doc['title']} | {f['sent']} ({f['streamed']}) | {f['ok']} | "
            f"{f['failed']} ({_reasons(f['failed_by_reason'])}) | "
            f"{f['stream_errors']} ({_reasons(f['stream_errors_by_reason'])}) | "
            f"{f['stream_cuts']} | {f['silent']} / {f.get('garbled', 0)} / {f['hangs']} | "
            f"{_s(f['p99_before_s'])} | {_s(f['p99_during_fault_s'])} |")
        extra = f"client re-sends to another router: {f['client_failovers']}; " \
            if f.get("client_failovers") else ""
        notes.append(f"- **{doc['title']}** - {doc['fault']}. {extra}"
                     f"{_observations(doc['observations'])}. "
                     f"({f['requests_during_fault']} requests started in the fault window, "
                     f"max {_s(f['max_during_fault_s'])} s; {doc['machine']}.)")
    when = max((doc["recorded_at"] for doc in documents), default=time.time())
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when))
    return "\n".join([BEGIN, f"Recorded {stamp} with `make chaos` "
                      "(`python scripts/chaos_report.py`).", "", *rows, "", *notes, END])


SKELETON = """# Reliability

What Flotilla does when parts of it fail, measured: fault-injection scenarios under load (below),
and the router's memory under many concurrent streams.

## Chaos suite

{table}
"""


def write_doc(block: str) -> None:
    if not DOC.exists():
        DOC.write_text(SKELETON.format(table=block))
        return
    text = DOC.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        DOC.write_text(head + block + tail)
    else:
        DOC.write_text(text.rstrip("\n") + "\n\n## Chaos suite\n\n" + block + "\n")


def load_documents(results: Path) -> list[dict[str, Any]]:
    documents = [json.loads(path.read_text()) for path in results.glob("*.json")]
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(documents, key=lambda d: (rank.get(d["scenario"], len(ORDER)), d["scenario"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "build" / "chaos")
    parser.add_argument("--no-run", action="store_true", help="only render existing results")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (e.g. -k spot)")
    args = parser.parse_args(argv)
    code = 0 if args.no_run else run_suite(args.results, args.pytest_args)
    documents = load_documents(args.results)
    if not documents:
        print(f"no results in {args.results}", file=sys.stderr)
        return code or 1
    write_doc(render(documents))
    print(f"{len(documents)} scenarios rendered into {DOC.relative_to(ROOT)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
