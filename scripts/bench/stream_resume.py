"""Spot loss mid-stream: share of streams saved by `stream_resume`, and the gap the client sees.

    python scripts/bench/stream_resume.py [--streams-cut 16] [--streams-load 32] [--runs 2]
                                          [--json out.json]

Everything on 127.0.0.1, started here and stopped here by PID: redis-server, three simulators
(paced like an engine: 5 ms TTFT, 10 ms between tokens, 200-token answers), a router process.
Per scenario:

  1. only the doomed worker is registered; `--streams-cut` streams start on it and each gets at
     least 20 tokens;
  2. the two other workers join the pool, `--streams-load` more streams start (load), and the
     doomed worker dies: SIGKILL (crash), or SIGSTOP (hang, caught by `--idle-timeout 1`);
  3. every stream is read to its end.

Reported per scenario: streams saved (ended with a finish_reason, no error event, text exactly
the simulator's deterministic answer, one id), streams with an error event, and for the cut
streams the client-side gap: the longest pause between two text chunks after the death, i.e.
last chunk from the dead worker -> first from its replacement (the normal gap between tokens is
10 ms), with the router's own `stream_resume_gap` histogram mean.
Scenarios: crash with stream_resume on / off, hang with it on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Procs, free_port, wait_http  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from simulator.textgen import TextGenerator  # noqa: E402

PY = sys.executable
MODEL = "bench-model"
TOKENS = 200
PACED = ("--ttft-ms", "5", "--itl-ms", "10", "--output-tokens", str(TOKENS))


def start_sim(procs: Procs, name: str) -> tuple[str, int]:
    port = free_port()
    proc = procs.start(name, [PY, "-m", "simulator", "--port", str(port), "--model", MODEL,
                              "--log-level", "warning", *PACED],
                       cwd=str(REPO), env={"PYTHONPATH": str(REPO)})
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health", proc)
    return url, proc.pid


async def register(redis_url: str, prefix: str, workers: dict[str, str], resume: bool) -> None:
    from fleet.redis_store import RedisFleetStore
    from fleet.schemas import WorkerRecord
    from fleet.store import POOLS, ROUTES

    store = RedisFleetStore(redis_url, prefix=prefix)
    try:
        await store.ensure_epoch("bench")
        await store.put_doc(POOLS, "p", {"model_id": MODEL, "engine": "vllm", "provider": "local",
                                         "min_replicas": 0, "max_replicas": 3})
        await store.put_doc(ROUTES, MODEL, {"targets": [{"pool": "p"}], "stream_resume": resume})
        now = time.time() + 3600
        await store.save_workers([(WorkerRecord(
            worker_id=wid, instance_id=wid, model_id=MODEL, engine="vllm", url=url,
            agent_url=url, registered_at=now, last_heartbeat=now, status="ready", pool="p",
            probe_passed_at=now), True) for wid, url in workers.items()])
        for topic in ("pools", "routes", "workers"):
            await store.publish(topic)
    finally:
        await store.aclose()


async def ready_workers(session: aiohttp.ClientSession, router: str) -> int:
    async with session.get(router + "/readyz") as response:
        return int((await response.json())["workers"])


class StreamRecord:
    def __init__(self, prompt: str) -> None:
        self.prompt = prompt
        self.times: list[float] = []
        self.text = ""
        self.ids: set[str] = set()
        self.finishes: list[str] = []
        self.error = False
        self.tokens = asyncio.Event()  # set at 20 tokens

    def saved(self) -> bool:
        expected = TextGenerator(0, TOKENS).chat([{"role": "user", "content": self.prompt}],
                                                 continue_final=False, max_tokens=None).text
        return (not self.error and self.finishes == ["stop"] and len(self.ids) == 1
                and self.text == expected)

    def gap_after(self, moment: float) -> float | None:
        """The longest pause between two text chunks, the later one after `moment`: the worker's
        death (tokens already in flight when it died still arrive just after it)."""
        gaps = [b - a for a, b in zip(self.times, self.times[1:], strict=False) if b > moment]
        return max(gaps) if gaps else None


async def read_stream(session: aiohttp.ClientSession, router: str, record: StreamRecord) -> None:
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user",
                                                          "content": record.prompt}]}
    async with session.post(router + "/v1/chat/completions", json=body) as response:
        buffer = b""
        async for chunk in response.content.iter_any():
            now = time.perf_counter()
            buffer += chunk
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                payload = event[6:] if event.startswith(b"data: ") else b""
                if not payload or payload == b"[DONE]":
                    continue
                data = json.loads(payload)
                if "error" in data:
                    record.error = True
                    continue
                record.ids.add(data["id"])
                for choice in data["choices"]:
                    content = choice["delta"].get("content") or ""
                    if content:
                        record.text += content
                        record.times.append(now)
                        if len(record.times) == 20:
                            record.tokens.set()
                    if choice.get("finish_reason"):
                        record.finishes.append(choice["finish_reason"])
    record.tokens.set()


async def gap_metric(session: aiohttp.ClientSession, router: str) -> tuple[float, float]:
    async with session.get(router + "/metrics") as response:
        text = await response.text()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("flotilla_router_stream_resume_gap_seconds_sum"):
            total = float(line.split()[-1])
        if line.startswith("flotilla_router_stream_resume_gap_seconds_count"):
            count = float(line.split()[-1])
    return total, count


async def scenario(args: argparse.Namespace, procs: Procs, redis_url: str, name: str,
                   death: str, resume: bool) -> dict[str, object]:
    prefix = f"bench-{name}-{os.getpid()}-{time.monotonic_ns()}"
    sims = [start_sim(procs, f"{name}-sim{i}") for i in range(3)]
    (doomed_url, doomed_pid), others = sims[0], sims[1:]
    await register(redis_url, prefix, {"doomed": doomed_url}, resume)
    port = free_port()
    extra = ["--idle-timeout", "1"] if death == "hang" else []
    proc = procs.start(f"{name}-router", [PY, "-m", "router", "--host", "127.0.0.1", "--port",
                                          str(port), "--no-auth", *extra],
                       cwd=str(REPO), env={"PYTHONPATH": str(REPO), "REDIS_URL": redis_url,
                                           "STORE_PREFIX": prefix, "LOG_LEVEL": "error"})
    router = f"http://127.0.0.1:{port}"
    wait_http(router + "/readyz", proc)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=0)) as session:
        cut = [StreamRecord(f"cut stream {i} of {name}") for i in range(args.streams_cut)]
        load = [StreamRecord(f"load stream {i} of {name}") for i in range(args.streams_load)]
        tasks = [asyncio.create_task(read_stream(session, router, r)) for r in cut]
        await asyncio.wait_for(asyncio.gather(*[r.tokens.wait() for r in cut]), 30)
        await register(redis_url, prefix, {"doomed": doomed_url, "w1": others[0][0],
                                           "w2": others[1][0]}, resume)
        while await ready_workers(session, router) < 3:
            await asyncio.sleep(0.02)
        tasks += [asyncio.create_task(read_stream(session, router, r)) for r in load]
        await asyncio.sleep(0.1)
        died_at = time.perf_counter()
        os.killpg(doomed_pid, signal.SIGKILL if death == "crash" else signal.SIGSTOP)
        try:
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
        finally:
            if death == "hang":
                os.killpg(doomed_pid, signal.SIGKILL)
        gap_sum, gap_count = await gap_metric(session, router)
    gaps = sorted(g for g in (r.gap_after(died_at) for r in cut if r.saved()) if g is not None)

    def pct(q: float) -> float | None:
        return round(gaps[min(len(gaps) - 1, int(q * len(gaps)))] * 1000, 1) if gaps else None

    return {
        "scenario": name, "death": death, "stream_resume": resume,
        "cut_streams": len(cut), "cut_saved": sum(r.saved() for r in cut),
        "cut_error_event": sum(r.error for r in cut),
        "load_streams": len(load), "load_saved": sum(r.saved() for r in load),
        "gap_ms_p50": pct(0.5), "gap_ms_p99": pct(0.99), "gap_ms_max": pct(1.0),
        "router_gap_ms_mean": round(gap_sum / gap_count * 1000, 1) if gap_count else None,
        "resumes": int(gap_count),
    }


async def run(args: argparse.Namespace) -> list[dict[str, object]]:
    workdir = Path(tempfile.mkdtemp(prefix="flotilla-resume-"))
    procs = Procs(workdir)
    rows = []
    try:
        redis_port = free_port()
        redis = procs.start("redis", ["redis-server", "--port", str(redis_port), "--bind",
                                      "127.0.0.1", "--save", "", "--appendonly", "no"])
        await asyncio.sleep(0.5)
        assert redis.alive(), redis.log.read_text()
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        for run_index in range(args.runs):
            for name, death, resume in (("crash-resume", "crash", True),
                                        ("crash-no-resume", "crash", False),
                                        ("hang-resume", "hang", True)):
                row = await scenario(args, procs, redis_url, f"{name}-{run_index}", death, resume)
                row["run"] = run_index + 1
                rows.append(row)
                print(json.dumps(row), flush=True)
                for proc in [p for p in procs.started if p.name.startswith(f"{name}-{run_index}")]:
                    procs.stop(proc)
    finally:
        procs.stop_all()
    return rows


def table(rows: list[dict[str, object]]) -> str:
    head = ("| run | death | stream_resume | cut streams saved | cut streams with error event | "
            "load streams saved | client gap p50 / p99 / max ms | router gap mean ms |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['run']} | {r['death']} | {'on' if r['stream_resume'] else 'off'} | "
                     f"{r['cut_saved']}/{r['cut_streams']} | {r['cut_error_event']} | "
                     f"{r['load_saved']}/{r['load_streams']} | {r['gap_ms_p50']} / "
                     f"{r['gap_ms_p99']} / {r['gap_ms_max']} | {r['router_gap_ms_mean']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams-cut", type=int, default=16)
    parser.add_argument("--streams-load", type=int, default=32)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
