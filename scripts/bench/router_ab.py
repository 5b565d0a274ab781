"""Router CPU per request and per streamed event: two checkouts compared in the same run.

    python scripts/bench/router_ab.py --a /work/main --b . [--rounds 3] [--seconds 4]

For checking that a change does not cost the hot path: both routers (each run from its own
checkout: cwd and PYTHONPATH) serve the same fleet (redis-server, two instant simulators) with
the same API key; wrk drives them in alternation, A then B, for `--rounds` rounds, non-streamed
chat (32 connections) then streamed chat (64 tokens), so the machine's background load falls on
both alike. CPU is the router process tree's utime + stime from /proc before and after each wrk
run (the figure that holds still on a shared machine). Reports per-round figures and the median
of the B / A ratios. Everything on 127.0.0.1, started and stopped here by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Procs, cpu_seconds, free_port, wait_http, wrk  # noqa: E402
from router_bench import (  # noqa: E402
    LOAD_CPU,
    PLAIN,
    PY,
    STREAM,
    SUT_CPU,
    count_events,
    seed_store,
    start_sim,
)


def start_router(procs: Procs, checkout: Path, name: str, redis_url: str) -> tuple[str, int]:
    port = free_port()
    proc = procs.start(name, [PY, "-m", "router", "--host", "127.0.0.1", "--port", str(port)],
                       cpus=SUT_CPU, cwd=str(checkout),
                       env={"PYTHONPATH": str(checkout), "REDIS_URL": redis_url,
                            "STORE_PREFIX": "bench", "LOG_LEVEL": "warning"})
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/readyz", proc)
    return url, proc.pid


def cost(url: str, pid: int, body: str, seconds: float, headers: dict[str, str]) -> float:
    before = cpu_seconds(pid)
    result = wrk(url + "/v1/chat/completions", body, connections=32, seconds=seconds,
                 cpus=LOAD_CPU, headers=headers)
    assert result.errors == 0, f"{result.errors} errors"
    return (cpu_seconds(pid) - before) * 1e6 / max(1, result.requests)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--a", type=Path, required=True, help="baseline checkout")
    parser.add_argument("--b", type=Path, required=True, help="changed checkout")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    procs = Procs(Path(tempfile.mkdtemp(prefix="flotilla-ab-")))
    rows = []
    try:
        redis_port = free_port()
        procs.start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"], cpus=LOAD_CPU)
        time.sleep(0.5)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        sims = [start_sim(procs, f"sim{i}", "--ttft-ms", "0", "--itl-ms", "0") for i in range(2)]
        key = asyncio.run(seed_store(redis_url, "bench", sims))
        headers = {"Authorization": f"Bearer {key}"}
        sides = {"a": start_router(procs, args.a.resolve(), "router-a", redis_url),
                 "b": start_router(procs, args.b.resolve(), "router-b", redis_url)}
        events = count_events(sides["a"][0] + "/v1/chat/completions", headers)
        for url, _ in sides.values():  # warm-up
            wrk(url + "/v1/chat/completions", PLAIN, connections=32, seconds=1, cpus=LOAD_CPU,
                headers=headers)
        for round_ in range(1, args.rounds + 1):
            row: dict[str, object] = {"round": round_}
            for side, (url, pid) in sides.items():
                row[f"{side}_us_per_request"] = round(cost(url, pid, PLAIN, args.seconds,
                                                           headers), 1)
                row[f"{side}_us_per_event"] = round(cost(url, pid, STREAM, args.seconds,
                                                         headers) / events, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        procs.stop_all()
    request_ratio = statistics.median(r["b_us_per_request"] / r["a_us_per_request"]  # type: ignore
                                      for r in rows)
    event_ratio = statistics.median(r["b_us_per_event"] / r["a_us_per_event"]  # type: ignore
                                    for r in rows)
    summary = {"a": str(args.a), "b": str(args.b), "rounds": rows,
               "median_ratio_b_over_a_per_request": round(request_ratio, 3),
               "median_ratio_b_over_a_per_event": round(event_ratio, 3)}
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
