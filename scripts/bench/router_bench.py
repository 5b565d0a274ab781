"""Router benchmark: Flotilla's router vs direct access, nginx, the Rust sglang-router, LiteLLM.

    python scripts/bench/router_bench.py [--seconds 6] [--peers-venv /work/peers-venv]
                                         [--profile] [--json out.json]

Everything runs on 127.0.0.1, started here and stopped here by PID: redis-server, simulators
(`python -m simulator`, no sleeps: --ttft-ms 0 --itl-ms 0), the system under test, wrk. On a
2-core machine the system under test gets CPU 0 and everything else CPU 1 (taskset), so the
proxy's CPU figure is its own. Figures (see docs/benchmarks.md):

  - added latency p50/p99 at modest load (Poisson arrivals, 100 req/s), each request paired
    with one sent straight to the simulator in the same window;
  - proxy CPU per request (non-streamed, 32 connections) and per streamed event (32 connections,
    CPU per stream / events per stream), from /proc utime+stime of the proxy's process tree;
  - stream relay p50 (whole-stream latency at 32 connections) vs nginx's;
  - peak RSS of the proxy;
  - balancing quality: p95 latency with least-outstanding vs round-robin over two simulators of
    unequal speed (open loop, Poisson arrivals), through the router.

Peers are skipped cleanly when not installed: nginx (Debian), `sglang-router` and
`litellm[proxy]` from a separate virtualenv (`--peers-venv`), never the project's dependencies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # noqa: E402
    Procs,
    cpu_seconds,
    free_port,
    peak_rss_mib,
    wait_http,
    wrk,
)

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
SUT_CPU, LOAD_CPU = ("0", "1") if (os.cpu_count() or 1) >= 2 else (None, None)
MODEL = "bench-model"
PLAIN = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hello there"}],
                    "max_tokens": 16})
MODEST_RATE = 100.0  # requests/s for the added-latency figure
BALANCE_RATE = 45.0  # requests/s over the unequal pair (~60% of their joint capacity)
BALANCE_BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                           "max_tokens": 32}).encode()
STREAM = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hello there"}],
                     "max_tokens": 64, "stream": True})


def start_sim(procs: Procs, name: str, *args: str) -> str:
    port = free_port()
    proc = procs.start(name, [PY, "-m", "simulator", "--port", str(port), "--model", MODEL,
                              "--output-tokens", "64", "--log-level", "warning", *args],
                       cpus=LOAD_CPU, cwd=str(REPO), env={"PYTHONPATH": str(REPO)})
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health", proc)
    return url


async def seed_store(redis_url: str, prefix: str, workers: list[str]) -> str:
    sys.path.insert(0, str(REPO))
    from fleet.catalog import ApiKeyRecord
    from fleet.redis_store import RedisFleetStore
    from fleet.schemas import WorkerRecord
    from fleet.secrets import display_prefix, new_api_key, sha256_hex
    from fleet.store import KEYS

    store = RedisFleetStore(redis_url, prefix=prefix)
    await store.ensure_epoch("bench")
    now = time.time() + 3600  # heartbeats are the control plane's business; keep them fresh
    records = [(WorkerRecord(worker_id=f"w{i}", instance_id=f"i{i}", model_id=MODEL,
                             engine="vllm", url=url, agent_url=url, registered_at=now,
                             last_heartbeat=now, status="ready", probe_passed_at=now), True)
               for i, url in enumerate(workers)]
    await store.save_workers(records)
    key = new_api_key()
    await store.put_doc(KEYS, sha256_hex(key), ApiKeyRecord(
        id="key_bench", name="bench", key_hash=sha256_hex(key), prefix=display_prefix(key),
        created_at=now, rpm=10_000_000, tpm=10_000_000_000))
    await store.aclose()
    return key


def count_events(url: str, headers: dict[str, str]) -> int:
    import urllib.request

    request = urllib.request.Request(url, data=STREAM.encode(), method="POST",
                                     headers={"content-type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().count(b"data:")


def measure(name: str, url: str, pid: int | None, seconds: float,
            headers: dict[str, str] | None = None, *, direct_url: str) -> dict[str, object]:
    """Modest-load latency, non-streamed CPU, streamed CPU and relay latency for one system."""
    headers = headers or {}
    row: dict[str, object] = {"system": name}
    endpoint = url + "/v1/chat/completions"
    events = count_events(endpoint, headers)
    row["events_per_stream"] = events
    wrk(endpoint, PLAIN, connections=32, seconds=2, cpus=LOAD_CPU, headers=headers)  # warm-up
    # Paired with direct requests in the same window: a shared machine's background load then
    # weighs on both sides of the difference alike.
    modest, baseline = asyncio.run(open_loop_pairs(url, headers, direct_url, MODEST_RATE,
                                                   seconds, PLAIN.encode()))
    row.update(modest_p50_ms=percentile(modest, 0.5) * 1000,
               modest_p99_ms=percentile(modest, 0.99) * 1000,
               added_p50_ms=(percentile(modest, 0.5) - percentile(baseline, 0.5)) * 1000,
               added_p99_ms=(percentile(modest, 0.99) - percentile(baseline, 0.99)) * 1000)
    before = cpu_seconds(pid) if pid else 0.0
    plain = wrk(endpoint, PLAIN, connections=32, seconds=seconds, cpus=LOAD_CPU, headers=headers)
    after = cpu_seconds(pid) if pid else 0.0
    row.update(rps=plain.rps, p50_ms=plain.p50_ms, p99_ms=plain.p99_ms, errors=plain.errors)
    if pid:
        row["cpu_us_per_request"] = (after - before) * 1e6 / max(1, plain.requests)
    before = cpu_seconds(pid) if pid else 0.0
    streamed = wrk(endpoint, STREAM, connections=32, seconds=seconds, cpus=LOAD_CPU,
                   headers=headers)
    after = cpu_seconds(pid) if pid else 0.0
    row.update(stream_p50_ms=streamed.p50_ms, stream_p99_ms=streamed.p99_ms,
               stream_errors=streamed.errors)
    if pid:
        row["cpu_us_per_event"] = (after - before) * 1e6 / max(1, streamed.requests * events)
        row["peak_rss_mib"] = peak_rss_mib(pid)
    row["errors"] = int(row["errors"]) + streamed.errors  # type: ignore[call-overload]
    return row


def nginx_conf(directory: Path, port: int, workers: list[str]) -> Path:
    servers = "\n".join(f"    server {u.removeprefix('http://')};" for u in workers)
    conf = directory / "nginx.conf"
    conf.write_text(f"""worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream sims {{
    least_conn;
{servers}
    keepalive 128;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://sims;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
""")
    return conf


def litellm_config(directory: Path, workers: list[str]) -> Path:
    conf = directory / "litellm.yaml"
    entries = "\n".join(
        f"  - model_name: {MODEL}\n    litellm_params:\n      model: openai/{MODEL}\n"
        f"      api_base: {u}/v1\n      api_key: unused" for u in workers)
    conf.write_text(f"model_list:\n{entries}\n")
    return conf


async def open_loop_pairs(url: str, headers: dict[str, str], direct_url: str, rate: float,
                          seconds: float, body: bytes) -> tuple[list[float], list[float]]:
    """Poisson arrivals at `rate`/s (seeded); each arrival sends one request to the system and,
    right after, one straight to the simulator, both timed alone."""
    rng = random.Random(7)
    system: list[float] = []
    direct: list[float] = []
    async with aiohttp.ClientSession(headers={"content-type": "application/json"},
                                     connector=aiohttp.TCPConnector(limit=0)) as session:
        async def timed(target: str, extra: dict[str, str], into: list[float]) -> None:
            started = time.perf_counter()
            async with session.post(target + "/v1/chat/completions", data=body,
                                    headers=extra) as response:
                await response.read()
            if response.status == 200:
                into.append(time.perf_counter() - started)

        async def pair() -> None:
            await timed(url, headers, system)
            await timed(direct_url, {}, direct)

        tasks = []
        start = time.perf_counter()
        due = start
        while due - start < seconds:
            due += rng.expovariate(rate)
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(pair()))
        await asyncio.gather(*tasks)
    return system, direct


async def open_loop(url: str, headers: dict[str, str], rate: float, seconds: float,
                    body: bytes) -> list[float]:
    """Poisson arrivals at `rate`/s (seeded), each request timed alone: latency at a load that
    does not queue behind itself, unlike a closed loop with no think time."""
    rng = random.Random(42)
    latencies: list[float] = []
    failures = 0
    async with aiohttp.ClientSession(headers={"content-type": "application/json", **headers},
                                     connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one() -> None:
            nonlocal failures
            started = time.perf_counter()
            async with session.post(url + "/v1/chat/completions", data=body) as response:
                await response.read()
            if response.status == 200:
                latencies.append(time.perf_counter() - started)
            else:
                failures += 1

        tasks = []
        start = time.perf_counter()
        due = start
        while due - start < seconds:
            due += rng.expovariate(rate)
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    if failures:
        print(f"  {failures} failed requests at {url}", flush=True)
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def start_router(procs: Procs, redis_url: str, prefix: str, policy: str,
                 name: str, *extra: str) -> tuple[str, int]:
    port = free_port()
    proc = procs.start(name, [PY, "-m", "router", "--host", "127.0.0.1", "--port", str(port),
                              "--policy", policy, *extra],
                       cpus=SUT_CPU, cwd=str(REPO),
                       env={"PYTHONPATH": str(REPO), "REDIS_URL": redis_url,
                            "STORE_PREFIX": prefix, "LOG_LEVEL": "warning"})
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/readyz", proc)
    return url, proc.pid


def run(args: argparse.Namespace) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="flotilla-bench-"))
    procs = Procs(workdir)
    rows: list[dict[str, object]] = []
    results: dict[str, object] = {"rows": rows, "workdir": str(workdir)}
    try:
        redis_port = free_port()
        redis = procs.start("redis", ["redis-server", "--port", str(redis_port), "--bind",
                                      "127.0.0.1", "--save", "", "--appendonly", "no"],
                            cpus=LOAD_CPU)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        time.sleep(0.5)
        assert redis.alive(), redis.log.read_text()
        sims = [start_sim(procs, f"sim{i}", "--ttft-ms", "0", "--itl-ms", "0")
                for i in range(2)]
        key = asyncio.run(seed_store(redis_url, "bench", sims))
        auth = {"Authorization": f"Bearer {key}"}

        rows.append(measure("direct (simulator)", sims[0], None, args.seconds,
                            direct_url=sims[0]))
        print(rows[-1], flush=True)

        url, pid = start_router(procs, redis_url, "bench", "least_outstanding", "router")
        if args.profile and shutil.which(str(Path(args.peers_venv) / "bin" / "py-spy")):
            profile = workdir / "router-profile.txt"
            spy = procs.start("py-spy", [str(Path(args.peers_venv) / "bin" / "py-spy"), "record",
                                         "-p", str(pid), "-d", str(int(args.seconds * 3)),
                                         "-r", "250", "-f", "raw", "-o", str(profile)],
                              cpus=LOAD_CPU)
            results["profile"] = str(profile)
            rows.append(measure("flotilla router (profiled)", url, pid, args.seconds, auth,
                                direct_url=sims[0]))
            spy.popen.wait(timeout=60)
        rows.append(measure("flotilla router", url, pid, args.seconds, auth, direct_url=sims[0]))
        print(rows[-1], flush=True)
        procs.stop(next(p for p in procs.started if p.pid == pid))
        url, pid = start_router(procs, redis_url, "bench", "least_outstanding", "router-aiohttp",
                                "--upstream-client", "aiohttp")
        rows.append(measure("flotilla router, aiohttp client", url, pid, args.seconds, auth,
                            direct_url=sims[0]))
        print(rows[-1], flush=True)
        procs.stop(next(p for p in procs.started if p.pid == pid))

        if shutil.which("nginx"):
            port = free_port()
            conf = nginx_conf(workdir, port, sims)
            nginx = procs.start("nginx", ["nginx", "-c", str(conf), "-p", str(workdir),
                                          "-g", "daemon off;"], cpus=SUT_CPU)
            wait_http(f"http://127.0.0.1:{port}/health", nginx)
            rows.append(measure("nginx (reverse proxy)", f"http://127.0.0.1:{port}", nginx.pid,
                                args.seconds, direct_url=sims[0]))
            print(rows[-1], flush=True)
            procs.stop(nginx)
        else:
            print("nginx not installed: skipped", flush=True)

        sglang = Path(args.peers_venv) / "bin" / "sglang-router"
        if sglang.exists():
            port = free_port()
            proc = procs.start("sglang-router", [str(sglang), "launch", "--host", "127.0.0.1",
                                                 "--port", str(port), "--worker-urls", *sims,
                                                 "--policy", "round_robin", "--log-level",
                                                 "warn"], cpus=SUT_CPU)
            # Not `--backend openai`: sglang-router 0.3.2 then sends every request to one worker.
            wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=60)
            time.sleep(1)
            rows.append(measure("sglang-router 0.3.2 (Rust)", f"http://127.0.0.1:{port}",
                                proc.pid, args.seconds, direct_url=sims[0]))
            print(rows[-1], flush=True)
            procs.stop(proc)
        else:
            print(f"{sglang} not installed: skipped", flush=True)

        litellm = Path(args.peers_venv) / "bin" / "litellm"
        if litellm.exists() and not args.skip_litellm:
            port = free_port()
            conf = litellm_config(workdir, sims)
            proc = procs.start("litellm", [str(litellm), "--config", str(conf), "--host",
                                           "127.0.0.1", "--port", str(port), "--num_workers",
                                           "1"], cpus=SUT_CPU,
                               env={"LITELLM_MASTER_KEY": "sk-bench-master",
                                    "LITELLM_LOG": "ERROR"})
            wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, timeout=180)
            rows.append(measure("LiteLLM proxy", f"http://127.0.0.1:{port}", proc.pid,
                                args.seconds, {"Authorization": "Bearer sk-bench-master"},
                                direct_url=sims[0]))
            print(rows[-1], flush=True)
            procs.stop(proc)
        else:
            print("litellm not installed (or skipped): skipped", flush=True)

        # Balancing quality over unequal workers: one fast, one 4x slower.
        fast = start_sim(procs, "fast", "--ttft-ms", "10", "--itl-ms", "2",
                         "--max-num-seqs", "8")
        slow = start_sim(procs, "slow", "--ttft-ms", "10", "--itl-ms", "2",
                         "--max-num-seqs", "8", "--slow-factor", "3")
        unequal_auth = {"Authorization":
                        f"Bearer {asyncio.run(seed_store(redis_url, 'unequal', [fast, slow]))}"}
        balance = {}
        for policy in ("round_robin", "least_outstanding"):
            url, _ = start_router(procs, redis_url, "unequal", policy, f"router-{policy}")
            asyncio.run(open_loop(url, unequal_auth, 10, 1.0, BALANCE_BODY))  # warm-up
            latencies = asyncio.run(open_loop(url, unequal_auth, BALANCE_RATE, args.seconds * 2,
                                              BALANCE_BODY))
            balance[policy] = {"requests": len(latencies),
                               "p50_ms": percentile(latencies, 0.5) * 1000,
                               "p95_ms": percentile(latencies, 0.95) * 1000}
            print(policy, balance[policy], flush=True)
        results["balancing"] = balance
    finally:
        procs.stop_all()
    return results


def versions(peers_venv: str) -> dict[str, str]:
    def out(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "not installed"

    import aiohttp as _aiohttp
    import starlette
    import uvicorn

    return {
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "starlette": starlette.__version__, "uvicorn": uvicorn.__version__,
        "aiohttp": _aiohttp.__version__,
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
        if shutil.which("nginx") else "not installed",
        "wrk": out(["wrk", "--version"]).splitlines()[0] if shutil.which("wrk") else "missing",
        "sglang-router": out([f"{peers_venv}/bin/pip", "show", "sglang-router"]).split("\n")[1]
        if Path(f"{peers_venv}/bin/pip").exists() else "not installed",
        "litellm": out([f"{peers_venv}/bin/pip", "show", "litellm"]).split("\n")[1]
        if Path(f"{peers_venv}/bin/litellm").exists() else "not installed",
    }


def table(results: dict[str, object]) -> str:
    rows = results["rows"]  # type: ignore[index]
    lines = [f"| system | added p50 / p99 at {MODEST_RATE:.0f} req/s (ms) | CPU µs / request | "
             "CPU µs / streamed event | stream p50 (ms) | req/s at 32 conns | peak RSS (MiB) | "
             "errors |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:  # type: ignore[union-attr]
        added = f"{row['added_p50_ms']:+.2f} / {row['added_p99_ms']:+.2f}"
        cpu = f"{row['cpu_us_per_request']:.0f}" if "cpu_us_per_request" in row else "-"
        event = f"{row['cpu_us_per_event']:.1f}" if "cpu_us_per_event" in row else "-"
        rss = f"{row['peak_rss_mib']:.0f}" if "peak_rss_mib" in row else "-"
        lines.append(f"| {row['system']} | {added} | {cpu} | {event} | "
                     f"{row['stream_p50_ms']:.1f} | {row['rps']:.0f} | {rss} | {row['errors']} |")
    balance = results.get("balancing") or {}
    if balance:
        lines += ["", f"| policy (fast + 3x slower simulator, {BALANCE_RATE:.0f} req/s) | requests "
                      "| p50 (ms) | "
                      "p95 (ms) |", "|---|---|---|---|"]
        for policy, b in balance.items():  # type: ignore[union-attr]
            lines.append(f"| {policy} | {b['requests']} | {b['p50_ms']:.1f} | "
                         f"{b['p95_ms']:.1f} |")
        rr, lor = balance.get("round_robin"), balance.get("least_outstanding")
        if rr and lor:
            gain = 100 * (1 - lor["p95_ms"] / rr["p95_ms"])
            lines.append(f"\nleast_outstanding p95 is {gain:.0f}% below round_robin")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="measurement per run")
    parser.add_argument("--peers-venv", default=os.environ.get("PEERS_VENV", "/work/peers-venv"))
    parser.add_argument("--profile", action="store_true", help="py-spy the router (peers venv)")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--json", help="write the raw results here")
    args = parser.parse_args()
    if LOAD_CPU is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(LOAD_CPU)})  # this process generates load: off the SUT's CPU
    if not shutil.which("wrk") or not shutil.which("redis-server"):
        print("wrk and redis-server are required", file=sys.stderr)
        return 2
    results = run(args)
    results["versions"] = versions(args.peers_venv)
    results["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    print()
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
