"""Response cache: latency of a hit vs a miss through the router vs the engine directly.

    python scripts/bench/cache_bench.py [--requests 200] [--json out.json]

Everything on 127.0.0.1, started here and stopped here by PID: redis-server, one simulator per
engine profile, a router process with a cached route (`cache: {}`) over the simulator's pool.
For each profile - `instant` (--ttft-ms 0 --itl-ms 0: shows the router's own costs) and `paced`
(20 ms to the first token, 5 ms per token, 32 tokens: an engine that takes time) - and for
non-streamed and streamed chat, `--requests` sequential requests of each kind, interleaved
(direct, miss, hit, direct, miss, hit, ...) so the machine's load hits all three alike:

  direct   the simulator itself, a body never sent before
  miss     through the router, a body never sent before (lookup, relay, store)
  hit      through the router, a body it has cached (lookup, replay)

Reports p50 / p90 / p99 of the whole response (last byte) in ms, and hit / direct ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Procs, free_port, wait_http  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

PY = sys.executable
MODEL = "bench-model"
PROFILES = {"instant": ("--ttft-ms", "0", "--itl-ms", "0", "--output-tokens", "32"),
            "paced": ("--ttft-ms", "20", "--itl-ms", "5", "--output-tokens", "32")}


async def seed(redis_url: str, prefix: str, sim_url: str) -> None:
    from fleet.redis_store import RedisFleetStore
    from fleet.schemas import WorkerRecord
    from fleet.store import POOLS, ROUTES

    store = RedisFleetStore(redis_url, prefix=prefix)
    try:
        await store.ensure_epoch("bench")
        await store.put_doc(POOLS, "p", {"model_id": MODEL, "engine": "vllm", "provider": "local",
                                         "min_replicas": 0, "max_replicas": 1})
        await store.put_doc(ROUTES, MODEL, {"targets": [{"pool": "p"}],
                                            "cache": {"ttl_s": 600, "max_entries": 100_000}})
        now = time.time() + 3600
        await store.save_workers([(WorkerRecord(
            worker_id="w0", instance_id="w0", model_id=MODEL, engine="vllm", url=sim_url,
            agent_url=sim_url, registered_at=now, last_heartbeat=now, status="ready", pool="p",
            probe_passed_at=now), True)])
    finally:
        await store.aclose()


def body(text: str, stream: bool) -> dict[str, object]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], "temperature": 0,
            "stream": stream}


async def timed(session: aiohttp.ClientSession, url: str, payload: dict[str, object],
                expect: str | None) -> float:
    started = time.perf_counter()
    async with session.post(url + "/v1/chat/completions", json=payload) as response:
        await response.read()
        assert response.status == 200, response.status
        if expect is not None:
            assert response.headers.get("x-flotilla-cache") == expect, response.headers
    return (time.perf_counter() - started) * 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


async def measure(router: str, sim: str, profile: str, stream: bool,
                  requests: int) -> dict[str, object]:
    kinds: dict[str, list[float]] = {"direct": [], "miss": [], "hit": []}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        warm = body(f"warm {profile} {stream}", stream)
        await timed(session, router, warm, None)  # connections and the hit entry exist
        for _ in range(20):
            await timed(session, router, warm, "hit")
            await timed(session, sim, warm, None)
        for i in range(requests):
            fresh = f"question {i} for {profile} stream={stream} {time.monotonic_ns()}"
            kinds["direct"].append(await timed(session, sim, body(fresh + " direct", stream),
                                               None))
            kinds["miss"].append(await timed(session, router, body(fresh, stream), "miss"))
            kinds["hit"].append(await timed(session, router, warm, "hit"))
    row: dict[str, object] = {"profile": profile, "stream": stream, "requests": requests}
    for kind, values in kinds.items():
        row[kind] = {"p50": pct(values, 0.5), "p90": pct(values, 0.9), "p99": pct(values, 0.99)}
    row["hit_over_direct_p50"] = round(pct(kinds["hit"], 0.5) / pct(kinds["direct"], 0.5), 3)
    row["miss_minus_direct_p50_ms"] = round(pct(kinds["miss"], 0.5) - pct(kinds["direct"], 0.5),
                                            2)
    return row


async def run(args: argparse.Namespace) -> list[dict[str, object]]:
    workdir = Path(tempfile.mkdtemp(prefix="flotilla-cache-"))
    procs = Procs(workdir)
    rows = []
    try:
        redis_port = free_port()
        redis = procs.start("redis", ["redis-server", "--port", str(redis_port), "--bind",
                                      "127.0.0.1", "--save", "", "--appendonly", "no"])
        await asyncio.sleep(0.5)
        assert redis.alive(), redis.log.read_text()
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        for profile, flags in PROFILES.items():
            port = free_port()
            sim = procs.start(f"sim-{profile}", [PY, "-m", "simulator", "--port", str(port),
                                                 "--model", MODEL, "--log-level", "warning",
                                                 *flags], cwd=str(REPO),
                              env={"PYTHONPATH": str(REPO)})
            sim_url = f"http://127.0.0.1:{port}"
            wait_http(sim_url + "/health", sim)
            prefix = f"cache-bench-{profile}"
            await seed(redis_url, prefix, sim_url)
            router_port = free_port()
            router = procs.start(f"router-{profile}", [
                PY, "-m", "router", "--host", "127.0.0.1", "--port", str(router_port),
                "--no-auth"], cwd=str(REPO),
                env={"PYTHONPATH": str(REPO), "REDIS_URL": redis_url, "STORE_PREFIX": prefix,
                     "LOG_LEVEL": "warning"})
            router_url = f"http://127.0.0.1:{router_port}"
            wait_http(router_url + "/readyz", router)
            for stream in (False, True):
                row = await measure(router_url, sim_url, profile, stream, args.requests)
                rows.append(row)
                print(json.dumps(row), flush=True)
            procs.stop(router)
            procs.stop(sim)
    finally:
        procs.stop_all()
    return rows


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| engine | stream | direct p50 / p90 / p99 ms | miss p50 / p90 / p99 ms | "
             "hit p50 / p90 / p99 ms | hit / direct (p50) |", "|" + "---|" * 6]
    for r in rows:
        cells = [" / ".join(str(r[k][q]) for q in ("p50", "p90", "p99"))  # type: ignore[index]
                 for k in ("direct", "miss", "hit")]
        lines.append(f"| {r['profile']} | {'yes' if r['stream'] else 'no'} | {cells[0]} | "
                     f"{cells[1]} | {cells[2]} | {r['hit_over_direct_p50']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
