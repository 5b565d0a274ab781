"""Autoscaling benchmark: a bursty trace, replayed time-compressed against the real stack.

    /work/venv/bin/python scripts/bench/autoscaling.py            # ~4 min, writes docs/bench/
    /work/venv/bin/python scripts/bench/autoscaling.py --quick    # ~1 min smoke run

Three runs, each on a fresh `flotilla up` (router + control plane, embedded store, local provider
starting real agent + simulator processes; autoscaling_stack.py):

    default            target_tracking (queue depth, TTFT p95 vs the SLO)
    static             min = max = the replicas the peak needs, warm before the trace starts
    queue_depth_only   the queue-depth term alone

The trace (autoscaling_trace.py) is replayed with its durations divided by the compression factor
k and every fleet timing divided by the same k; request rates and latencies stay real. Each
request is a streamed chat completion through the router with the official openai SDK; TTFT is
measured client-side (send -> first content token). GPU-hours come from the control plane's cost
ledger (every replica priced $1/h, read at the start and the end of the replay), multiplied by k
back to trace time, and are checked against the sampled instance count. Traffic goes to 127.0.0.1
only; every process is ours and stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))
from autoscaling_report import (  # noqa: E402
    RequestResult,
    RunResult,
    markdown_table,
    plot,
    ratios,
)
from autoscaling_stack import REPO, SimulatedEngine, Stack, Timings  # noqa: E402
from autoscaling_trace import DEFAULT_PHASES, Phase, Trace  # noqa: E402

POOL, MODEL = "bench", "bench/chat"
MESSAGES = [{"role": "user", "content": "Summarise the benefits of Spot GPUs."}]
QUICK_PHASES = (  # the default trace's shape, shorter: a smoke run, not a measurement
    Phase("quiet", 1, 1.5, 1.5), Phase("ramp", 2, 1.5, 8.0), Phase("spike", 2, 16.0, 16.0),
    Phase("fall", 1, 3.0, 2.0), Phase("idle", 7, 0.0, 0.0), Phase("return", 2, 4.0, 4.0))
RUNS = (("default", "target_tracking", "default (target_tracking)"),
        ("static", "static", "static, sized for peak"),
        ("queue", "queue_depth_only", "queue_depth_only"))


def pool_body(policy: str, peak: int, max_replicas: int, timings: Timings, slo_ms: float,
              target_queue_depth: float, warm: int) -> dict[str, Any]:
    if policy == "static":
        return {"model_id": MODEL, "engine": "vllm", "provider": "local",
                "min_replicas": peak, "max_replicas": peak, "scale_to_zero_after_s": None,
                "ttft_p95_slo_ms": slo_ms, "target_queue_depth": target_queue_depth}
    return {"model_id": MODEL, "engine": "vllm", "provider": "local", "min_replicas": warm,
            "max_replicas": max_replicas, "target_queue_depth": target_queue_depth,
            "ttft_p95_slo_ms": slo_ms,
            "scale_to_zero_after_s": timings.real(timings.scale_to_zero_after_s)}


async def one_request(client: openai.AsyncOpenAI, start: float, phase: str,
                      max_tokens: int) -> RequestResult:
    t0 = time.monotonic()
    sent = t0 - start
    first: float | None = None
    try:
        stream = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, max_tokens=max_tokens)
        finished = False
        async for chunk in stream:
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            if first is None and choice.delta.content:
                first = time.monotonic() - t0
            if choice.finish_reason is not None:
                finished = True
        if not finished:
            return RequestResult(sent, phase, first, "stream ended without finish_reason")
        return RequestResult(sent, phase, first)
    except openai.APIStatusError as exc:
        return RequestResult(sent, phase, first, f"HTTP {exc.status_code}")
    except (openai.APIError, httpx.HTTPError) as exc:
        return RequestResult(sent, phase, first, type(exc).__name__)


async def replay(stack: Stack, key: str, trace: Trace, max_tokens: int, drain_s: float
                 ) -> tuple[list[RequestResult], float, float]:
    """Open-loop: every arrival is sent at its time whatever happened to the others."""
    arrivals = trace.arrivals()
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=100)
    async with openai.AsyncOpenAI(
            base_url=stack.router_url, api_key=key, max_retries=0, timeout=60.0,
            http_client=openai.DefaultAsyncHttpxClient(limits=limits)) as client:
        start = time.monotonic()
        tasks = []
        for arrival in arrivals:
            delay = start + arrival.real_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one_request(client, start, arrival.phase,
                                                         max_tokens)))
        delay = start + trace.real_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        end_wall = time.time()
        done, pending = await asyncio.wait(tasks, timeout=drain_s) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        results = [t.result() if t in done
                   else RequestResult(a.real_s, a.phase, None, "not finished")
                   for t, a in zip(tasks, arrivals, strict=True)]
    return results, start, end_wall


async def sample_pool(stack: Stack, run: RunResult, start_wall: float, period_s: float,
                      stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            status = (await stack.call("GET", f"/v1/pools/{POOL}"))["status"]
            live = sum(1 for i in status["instances"] if i["state"] != "terminated")
            now = time.time() - start_wall
            run.samples.append((now, status["ready_replicas"], live,
                                status["desired_replicas"]))
            if live == 0 and run.first_zero_trace_s is None and now > 0:
                run.first_zero_trace_s = now * run.compression
        except (httpx.HTTPError, RuntimeError):
            pass
        try:
            await asyncio.wait_for(stop.wait(), period_s)
        except TimeoutError:
            pass


async def wait_ready(stack: Stack, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        status = (await stack.call("GET", f"/v1/pools/{POOL}"))["status"]
        if status["ready_replicas"] >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} ready replica(s) not reached: {status}")
        await asyncio.sleep(0.2)


async def run_policy(name: str, policy: str, label: str, args: argparse.Namespace,
                     trace: Trace, timings: Timings, engine: SimulatedEngine, peak: int,
                     work: Path) -> RunResult:
    run = RunResult(policy, label, trace.compression, args.slo_ms)
    stack = Stack(work / name, timings.environment(policy, work / name / "instances", engine,
                                                   args.seed))
    try:
        await stack.start()
        key = (await stack.call("POST", "/v1/keys", json={"name": "bench"}))["key"]
        warm = peak if policy == "static" else 1
        body = pool_body(policy, peak, args.max_replicas or peak + 2, timings, args.slo_ms,
                         args.target_queue_depth, warm)
        await stack.call("PUT", f"/v1/pools/{POOL}", json=body)
        await stack.call("PUT", f"/v1/routes/{MODEL}", json={"targets": [{"pool": POOL}]})
        await wait_ready(stack, warm, timeout_s=90)
        # One request before the replay, as traffic was flowing before the trace begins: the
        # idle clock must not count the warm-up (it would scale to zero before the first
        # arrival).
        async with openai.AsyncOpenAI(base_url=stack.router_url, api_key=key,
                                      max_retries=0, timeout=30.0) as client:
            warmup = await one_request(client, time.monotonic(), "warm-up", 4)
            if warmup.error:
                raise RuntimeError(f"warm-up request failed: {warmup.error}")
        if policy != "static":
            await stack.call("PUT", f"/v1/pools/{POOL}", json={**body, "min_replicas": 0})
        cost_before = (await stack.call("GET", "/v1/cost"))["total_usd"]
        stop = asyncio.Event()
        start_wall = time.time()
        sampler = asyncio.create_task(sample_pool(stack, run, start_wall, 0.25, stop))
        results, _start, end_wall = await replay(stack, key, trace, engine.output_tokens,
                                                 drain_s=30.0)
        # Spend over the replay only: the ledger at its end (requests still streaming after it
        # are served by what was up at the end; their tail is not counted).
        cost_after = (await stack.call("GET", "/v1/cost"))["total_usd"]
        cost_at_end = cost_after - (time.time() - end_wall) * _live_at(run) / 3600.0
        stop.set()
        await sampler
        run.requests = results
        run.samples = [s for s in run.samples if s[0] <= end_wall - start_wall]
        run.ledger_gpu_hours_real = max(0.0, cost_at_end - cost_before)
        events = (await stack.call("GET", "/v1/events?limit=1000"))["data"]
        window = [e for e in events if start_wall <= e["time"] <= end_wall]
        run.scale_ups = sum(1 for e in window if e["kind"] == "autoscaler.scale_up")
        run.scale_downs = sum(1 for e in window if e["kind"] == "autoscaler.scale_down")
        run.launched = sum(1 for e in window if e["kind"] == "instance.launched")
        if args.show_decisions:  # why the policy moved: each scale decision's reason
            for e in sorted(window, key=lambda e: e["time"]):
                if e["kind"].startswith("autoscaler."):
                    data = e.get("data", {}).get("inputs", {})
                    flows = {k: data.get(k) for k in ("starting", "arrival_rate",
                                                      "served_per_replica", "boot_s")}
                    print(f"  +{(e['time'] - start_wall) * args.compression:6.0f} trace-s  "
                          f"{e['message']}  {flows}", flush=True)
        status = (await stack.call("GET", f"/v1/pools/{POOL}"))["status"]
        run.boot_s_real = [i["ready_at"] - i["launched_at"] for i in status["instances"]
                           if i.get("ready_at")]
    finally:
        run.leftover_pids = await stack.stop()
    return run


def _live_at(run: RunResult) -> int:
    return run.samples[-1][2] if run.samples else 0


def machine() -> str:
    load = os.getloadavg()
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
            f"Python {platform.python_version()}, load average {load[0]:.1f} at the end")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    phases = QUICK_PHASES if args.quick else DEFAULT_PHASES
    trace = Trace(phases, args.compression, args.seed)
    timings = Timings(args.compression, boot_s=args.boot_s,
                      scale_to_zero_after_s=args.scale_to_zero_after_s)
    engine = SimulatedEngine()
    peak = args.peak_replicas or math.ceil(trace.peak_rps / engine.capacity_rps)
    out = Path(args.out)
    trace.save(out, "autoscaling_trace_quick" if args.quick else "autoscaling_trace")
    print(f"trace: {trace.trace_s / 60:.0f} trace-min replayed in {trace.real_s:.0f} s "
          f"(k={args.compression:g}), {len(trace.arrivals())} requests, peak "
          f"{trace.peak_rps:g} req/s -> static fleet of {peak} "
          f"(one replica: {engine.capacity_rps:.2f} req/s at a full batch)", flush=True)
    runs: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="flotilla-autoscaling-") as tmp:
        for name, policy, label in RUNS:
            if args.policies and name not in args.policies:
                continue
            began = time.monotonic()
            run = await run_policy(name, policy, label, args, trace, timings, engine, peak,
                                   Path(tmp))
            runs.append(run)
            print(f"{label}: {json.dumps(run.summary())} ({time.monotonic() - began:.0f} s)",
                  flush=True)
    summaries = [r.summary() for r in runs]
    result = {
        "trace": trace.describe(), "requests": len(trace.arrivals()),
        "timings": {"compression": args.compression, "boot_trace_s": args.boot_s,
                    "scale_to_zero_after_trace_s": args.scale_to_zero_after_s,
                    "slo_ttft_ms": args.slo_ms, "target_queue_depth": args.target_queue_depth,
                    "peak_replicas": peak, "max_replicas": args.max_replicas or peak + 2},
        "engine": vars(engine) | {"capacity_rps": engine.capacity_rps},
        "machine": machine(), "command": " ".join(["scripts/bench/autoscaling.py",
                                                   *sys.argv[1:]]),
        "runs": summaries, "ratios": ratios(summaries),
        "samples": {r.label: r.samples for r in runs},
    }
    stem = "autoscaling_quick" if args.quick else "autoscaling"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown_table(summaries, args.slo_ms)
    (out / f"{stem}.md").write_text(table)
    plot(runs, trace, out / f"{stem}.png")
    print(table)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="short trace, k=60: a ~1 min smoke run")
    p.add_argument("--compression", type=float, default=None,
                   help="trace seconds per real second (default 30; --quick: 60)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--slo-ms", type=float, default=1000.0, help="TTFT SLO (client-side)")
    p.add_argument("--boot-s", type=float, default=60.0,
                   help="simulated machine boot + model load, trace seconds (the real start "
                        "of the agent and simulator processes comes on top: measured)")
    p.add_argument("--scale-to-zero-after-s", type=float, default=300.0,
                   help="idle time before scaling to zero, trace seconds")
    p.add_argument("--target-queue-depth", type=float, default=3.0)
    p.add_argument("--peak-replicas", type=int, default=None,
                   help="static fleet size (default: peak rate / one replica's capacity)")
    p.add_argument("--max-replicas", type=int, default=None, help="default: peak + 2")
    p.add_argument("--policies", nargs="*", choices=[r[0] for r in RUNS], default=None)
    p.add_argument("--out", default=str(REPO / "docs" / "bench"))
    p.add_argument("--show-decisions", action="store_true",
                   help="print every scale decision's reason during the replay")
    args = p.parse_args(argv)
    if args.compression is None:
        args.compression = 60.0 if args.quick else 30.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
