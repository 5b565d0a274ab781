"""Peer benchmark: Flotilla's router, nginx, the Rust sglang-router, LiteLLM's proxy and direct
access, in one session, against the same simulators.

    python scripts/bench/peers.py --out docs/bench/           # every system, every figure
    python scripts/bench/peers.py --quick --systems direct,router --out /tmp/peers

Figures (docs/benchmarks.md explains each):

  cpu       zero-latency simulators; wrk (an external load generator, 32 connections) drives
            non-streamed then streamed chat completions through each proxy; CPU per request and
            per streamed chunk from /proc utime+stime of the proxy's process tree; peak RSS.
  latency   realistic simulators (TTFT 50 ms, ITL 10 ms, 32 tokens, 8 slots); open-loop Poisson
            arrivals (5/s) of streamed requests from aiohttp, each paired with one sent straight
            to a simulator at the same instant; added TTFT and end-to-end latency p50/p99 =
            system - direct.
  balance   the second simulator made 3x slower (the same pair, at run time); non-streamed
            Poisson arrivals at ~60 % of the pair's capacity; share of requests each simulator
            served (its own /admin/stats) and client p50/p99.
  failover  streamed and non-streamed arrivals; the second simulator is SIGKILLed a third of the
            way in; failures the client saw (error status, reset, cut stream), split into
            requests in flight at the kill and requests sent after it.

Everything runs on 127.0.0.1, started here and stopped here by PID (harness.Procs), bounded in
time. The system under test runs on CPU 0, simulators, Redis, wrk and this client on CPU 1.
Writes <out>/peers.json, <out>/peers.md (tables) and one PNG per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_report  # noqa: E402
import peer_systems  # noqa: E402
import traffic  # noqa: E402
from harness import Proc, Procs, cpu_seconds, free_port, peak_rss_mib, wait_http, wrk  # noqa: E402
from router_bench import LOAD_CPU, PLAIN, REPO, STREAM, SUT_CPU, count_events  # noqa: E402

MODEL = peer_systems.MODEL
PHASES = ("cpu", "latency", "balance", "failover")
# A realistic engine for latency: a 7-8B model on one mid-range GPU streams its first token in
# ~50 ms and the next ones every ~10 ms.
REAL_TTFT_MS, REAL_ITL_MS, REAL_TOKENS, REAL_SLOTS = 50, 10, 32, 8
SLOW_FACTOR = 3.0


def body(index: int, stream: bool) -> bytes:
    """A chat request whose prompt differs from request to request, as real traffic does: with
    one fixed prompt a cache-aware router (sglang-router's default policy) would send everything
    to one worker by prefix affinity, which measures its affinity, not its balancing."""
    return json.dumps({"model": MODEL, "max_tokens": REAL_TOKENS, "stream": stream,
                       "messages": [{"role": "user", "content": f"request {index}: hello"}]}
                      ).encode()


class Simulators:
    """A pair of simulators on fixed ports, restartable on the same port after a kill."""

    def __init__(self, procs: Procs, name: str, *flags: str) -> None:
        self.procs, self.name, self.flags = procs, name, flags
        self.ports = [free_port(), free_port()]
        self.procs_by_index: list[Proc | None] = [None, None]
        for index in range(2):
            self.start(index, wait=False)
        for index, proc in enumerate(self.procs_by_index):
            assert proc
            wait_http(self.urls[index] + "/health", proc)

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def start(self, index: int, wait: bool = True) -> None:
        proc = self.procs.start(
            f"{self.name}{index}",
            [sys.executable, "-m", "simulator", "--port", str(self.ports[index]), "--model", MODEL,
             "--log-level", "warning", "--seed", str(index), *self.flags],
            cpus=LOAD_CPU, cwd=str(REPO), env={"PYTHONPATH": str(REPO)})
        self.procs_by_index[index] = proc
        if wait:
            wait_http(self.urls[index] + "/health", proc)

    def kill(self, index: int) -> None:
        """SIGKILL, like a Spot machine vanishing: connections reset, streams cut."""
        proc = self.procs_by_index[index]
        if proc and proc.alive():
            proc.popen.send_signal(signal.SIGKILL)

    def revive(self, index: int) -> None:
        proc = self.procs_by_index[index]
        if proc and not proc.alive():
            proc.popen.wait(timeout=10)
            self.procs.stop(proc)
            self.start(index)

    def faults(self, index: int, patch: dict[str, object] | None) -> None:
        """PUT the patch, or DELETE (back to start values) when None."""
        data = json.dumps(patch).encode() if patch is not None else None
        request = urllib.request.Request(self.urls[index] + "/admin/faults", data=data,
                                         method="PUT" if patch is not None else "DELETE",
                                         headers={"content-type": "application/json"})
        urllib.request.urlopen(request, timeout=10).read()

    def received(self) -> list[int]:
        counts = []
        for url in self.urls:
            with urllib.request.urlopen(url + "/admin/stats", timeout=10) as response:
                counts.append(int(json.loads(response.read())["received"]))
        return counts


# ---------------------------------------------------------------------------------------- cpu

CONNECTIONS = 32
SLOW_PROXY_MS = 250.0  # warm-up p50 above which a proxy is measured with FEW_CONNECTIONS
FEW_CONNECTIONS = 4


def completed_work(requests: int, connections: int) -> float:
    """Requests' worth of work the proxy did during a closed-loop wrk run: the completed ones plus
    the `connections` still in flight when wrk stops, half done on average. Negligible for a
    proxy doing thousands a second; for one that takes seconds per request at 32 connections
    counting only the completed requests would charge it the others' CPU too."""
    return requests + connections / 2


def cpu_phase(system: peer_systems.System, seconds: float, warmup: bool) -> dict[str, object]:
    """wrk through the system: req/s, CPU per request and per streamed chunk, peak RSS."""
    endpoint = system.urls[0] + "/v1/chat/completions"
    events = count_events(endpoint, system.headers)
    connections = CONNECTIONS
    if warmup:  # connection pools, caches, lazy imports
        warm = wrk(endpoint, PLAIN, connections=CONNECTIONS, seconds=2, cpus=LOAD_CPU,
                   headers=system.headers)
        if warm.p50_ms > SLOW_PROXY_MS:
            # Its requests take so long at 32 connections that those in flight when wrk stops
            # would rival the completed ones: a few connections keep the count exact.
            connections = FEW_CONNECTIONS
    row: dict[str, object] = {"chunks_per_stream": events, "connections": connections}
    pid = system.pid
    before = cpu_seconds(pid) if pid else 0.0
    plain = wrk(endpoint, PLAIN, connections=connections, seconds=seconds, cpus=LOAD_CPU,
                headers=system.headers)
    after = cpu_seconds(pid) if pid else 0.0
    row.update(rps=plain.rps, wrk_p50_ms=plain.p50_ms, wrk_p99_ms=plain.p99_ms,
               requests=plain.requests, errors=plain.errors)
    if pid:
        row["cpu_s_plain"] = after - before
        row["cpu_us_per_request"] = (after - before) * 1e6 / completed_work(plain.requests,
                                                                             connections)
    before = cpu_seconds(pid) if pid else 0.0
    # Twice as long: a slow proxy's streams take seconds each at 32 connections.
    streamed = wrk(endpoint, STREAM, connections=connections, seconds=2 * seconds, cpus=LOAD_CPU,
                   headers=system.headers)
    after = cpu_seconds(pid) if pid else 0.0
    row.update(streams_per_s=streamed.rps, stream_p50_ms=streamed.p50_ms,
               streams=streamed.requests, stream_errors=streamed.errors)
    if pid:
        row["cpu_s_streamed"] = after - before
        row["cpu_us_per_chunk"] = (after - before) * 1e6 / (
            completed_work(streamed.requests, connections) * events)
        row["peak_rss_mib"] = peak_rss_mib(pid)
    return row


# ------------------------------------------------------------------------------------ latency

async def latency_phase(system: peer_systems.System, direct: list[str], rate: float,
                        seconds: float) -> dict[str, object]:
    """Each arrival: one streamed request through the system and one straight to a simulator,
    sent together, so the machine's background load weighs on both alike."""
    async with traffic.session() as client:
        async def pair(index: int, origin: float) -> tuple[traffic.Outcome, traffic.Outcome]:
            target = system.urls[index % len(system.urls)]
            request = body(index, True)
            mine = traffic.send(client, target, system.headers, request, True, origin)
            base = traffic.send(client, direct[index % len(direct)], {}, request, True, origin)
            # Whichever is sent first is served first when both land on one simulator (~6 ms
            # here): every other pair of pairs goes the other way round.
            if (index // 2) % 2:
                theirs, ours = await asyncio.gather(base, mine)
                return ours, theirs
            return await asyncio.gather(mine, base)

        await traffic.poisson(rate, 1.0, pair, seed=1)  # warm-up: connections, caches
        pairs = await traffic.poisson(rate, seconds, pair, seed=7)
    both = [(s, d) for s, d in pairs if s.ok and d.ok]  # type: ignore[misc]
    row: dict[str, object] = {"pairs": len(pairs), "failed": len(pairs) - len(both)}
    for metric in ("ttft", "total"):
        mine = [getattr(s, f"{metric}_s" if metric == "total" else "ttft_s") for s, _ in both]
        base = [getattr(d, f"{metric}_s" if metric == "total" else "ttft_s") for _, d in both]
        for q, name in ((0.5, "p50"), (0.99, "p99")):
            row[f"{metric}_{name}_ms"] = traffic.percentile(mine, q) * 1000
            row[f"direct_{metric}_{name}_ms"] = traffic.percentile(base, q) * 1000
            row[f"added_{metric}_{name}_ms"] = (traffic.percentile(mine, q)
                                                - traffic.percentile(base, q)) * 1000
        row[f"added_{metric}_paired_median_ms"] = traffic.percentile(
            [m - b for m, b in zip(mine, base, strict=True)], 0.5) * 1000
    return row


# ------------------------------------------------------------------------------------ balance

async def balance_phase(system: peer_systems.System, sims: Simulators, rate: float,
                        seconds: float) -> dict[str, object]:
    """The second simulator runs SLOW_FACTOR times slower for the run."""
    sims.faults(1, {"slow_factor": SLOW_FACTOR})
    try:
        async with traffic.session() as client:
            async def one(index: int, origin: float) -> traffic.Outcome:
                return await traffic.send(client, system.urls[index % len(system.urls)],
                                          system.headers, body(index, False), False, origin)

            await traffic.poisson(rate, 1.0, one, seed=2)  # warm-up
            before = sims.received()
            outcomes: list[traffic.Outcome] = await traffic.poisson(  # type: ignore[assignment]
                rate, seconds, one, seed=11)
            after = sims.received()
    finally:
        sims.faults(1, None)
    served = [b - a for a, b in zip(before, after, strict=True)]
    ok = [o.total_s for o in outcomes if o.ok]
    return {"requests": len(outcomes), "failed": len(outcomes) - len(ok),
            "slow_share": served[1] / max(1, sum(served)), "upstream_requests": served,
            "p50_ms": traffic.percentile(ok, 0.5) * 1000,
            "p99_ms": traffic.percentile(ok, 0.99) * 1000}


# ----------------------------------------------------------------------------------- failover

async def failover_phase(system: peer_systems.System, sims: Simulators, rate: float,
                         seconds: float) -> dict[str, object]:
    """Half the arrivals streamed, half not; the second simulator SIGKILLed a third in."""
    kill_at = seconds / 3
    async with traffic.session() as client:
        async def one(index: int, origin: float) -> traffic.Outcome:
            # Pairs of arrivals alternate streamed / not, so that a client alternating between
            # the two simulators itself (direct) sends both kinds to each.
            stream = (index // 2) % 2 == 0
            return await traffic.send(client, system.urls[index % len(system.urls)],
                                      system.headers, body(index, stream), stream, origin)

        outcomes: list[traffic.Outcome] = await traffic.poisson(  # type: ignore[assignment]
            rate, seconds, one, seed=13, at=(kill_at, lambda: sims.kill(1)))
    failures = [o for o in outcomes if not o.ok]
    kinds: dict[str, int] = {}
    for o in failures:
        kinds[o.failure] = kinds.get(o.failure, 0) + 1
    return {
        "requests": len(outcomes), "errors": len(failures),
        "errors_before_kill": sum(o.started_s + o.total_s < kill_at for o in failures),
        "errors_in_flight_at_kill": sum(o.started_s < kill_at <= o.started_s + o.total_s
                                        for o in failures),
        "streams_cut_in_flight": sum(o.stream and o.started_s < kill_at <= o.started_s + o.total_s
                                     for o in failures),
        "errors_after_kill": sum(o.started_s >= kill_at for o in failures),
        "streamed_errors": sum(o.stream for o in failures),
        "sent_after_kill": sum(o.started_s >= kill_at for o in outcomes),
        "failure_kinds": kinds,
    }


# ------------------------------------------------------------------------------------ session

def run(args: argparse.Namespace, binaries: peer_systems.Binaries) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="flotilla-peers-"))
    procs = Procs(workdir)
    results: dict[str, object] = {"workdir": str(workdir), "skipped": {}, "systems": {}}
    systems: dict[str, dict[str, object]] = results["systems"]  # type: ignore[assignment]
    skipped: dict[str, str] = results["skipped"]  # type: ignore[assignment]
    wanted = []
    for key in args.systems:
        reason = binaries.missing(key)
        if reason:
            print(f"SKIP {key}: {reason}", flush=True)
            skipped[key] = reason
        else:
            wanted.append(key)
    if not wanted:
        return results
    try:
        redis_port = free_port()
        redis = procs.start("redis", ["redis-server", "--port", str(redis_port), "--bind",
                                      "127.0.0.1", "--save", "", "--appendonly", "no"],
                            cpus=LOAD_CPU)
        time.sleep(0.3)
        if not redis.alive():
            raise RuntimeError(redis.log.read_text())
        ctx = peer_systems.Context(procs, workdir, binaries, f"redis://127.0.0.1:{redis_port}/0",
                                   SUT_CPU, args.sglang_policy, args.litellm_strategy)
        if "cpu" in args.phases:
            zero = Simulators(procs, "zero", "--ttft-ms", "0", "--itl-ms", "0",
                              "--output-tokens", "64")
            for key in wanted:
                system = peer_systems.start(key, ctx, zero.urls, "zero")
                print(f"[cpu] {system.label} ...", flush=True)
                row = cpu_phase(system, args.seconds, warmup=not args.quick)
                systems.setdefault(key, {})["cpu"] = row
                print(f"[cpu] {system.label}: {row}", flush=True)
                if system.proc:
                    procs.stop(system.proc)
        real_phases = [p for p in ("latency", "balance", "failover") if p in args.phases]
        if real_phases:
            real = Simulators(procs, "real", "--ttft-ms", str(REAL_TTFT_MS), "--itl-ms",
                              str(REAL_ITL_MS), "--output-tokens", str(REAL_TOKENS),
                              "--max-num-seqs", str(REAL_SLOTS))
            for key in wanted:
                system = peer_systems.start(key, ctx, real.urls, "real")
                entry = systems.setdefault(key, {})
                try:
                    if "latency" in real_phases:
                        entry["latency"] = asyncio.run(latency_phase(
                            system, real.urls, args.latency_rate, args.seconds * 3))
                        print(f"[latency] {system.label}: {entry['latency']}", flush=True)
                    if "balance" in real_phases:
                        entry["balance"] = asyncio.run(balance_phase(
                            system, real, args.balance_rate, args.seconds * 2))
                        print(f"[balance] {system.label}: {entry['balance']}", flush=True)
                    if system.pid:
                        rss = peak_rss_mib(system.pid)
                        entry["peak_rss_mib_realistic"] = rss
                    if "failover" in real_phases:
                        entry["failover"] = asyncio.run(failover_phase(
                            system, real, args.failover_rate, args.seconds * 1.5))
                        print(f"[failover] {system.label}: {entry['failover']}", flush=True)
                finally:
                    if system.proc:
                        procs.stop(system.proc)
                    real.revive(1)
    finally:
        procs.stop_all()
    return results


def machine() -> dict[str, str]:
    info = {"python": platform.python_version(), "kernel": platform.release(),
            "cpus": str(os.cpu_count())}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout
        for line in lscpu.splitlines():
            name, _, value = line.partition(":")
            if name.strip() in ("Architecture", "Model name", "CPU(s)", "Thread(s) per core",
                                "Hypervisor vendor", "L3 cache"):
                info[name.strip()] = value.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        info["load average at start"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        pass
    return info


def versions(binaries: peer_systems.Binaries) -> dict[str, str]:
    import aiohttp
    import starlette
    import uvicorn

    out = {"flotilla router": "this checkout", "starlette": starlette.__version__,
           "uvicorn": uvicorn.__version__, "aiohttp (client)": aiohttp.__version__}
    wrk_banner = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    out["wrk"] = wrk_banner.split()[1] if wrk_banner.split()[1:] else "unknown"
    out.update(binaries.versions())
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/bench", help="directory for JSON, tables, PNGs")
    parser.add_argument("--systems", default=",".join(peer_systems.ALL),
                        help=f"comma-separated subset of {','.join(peer_systems.ALL)}")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"comma-separated subset of {','.join(PHASES)}")
    parser.add_argument("--seconds", type=float, default=6.0,
                        help="base length of a measured run (latency runs last 3x, balance 2x, "
                             "failover 1.5x)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 s runs (the figures mean little)")
    parser.add_argument("--latency-rate", type=float, default=5.0,
                        help="arrivals/s (each one a pair: ~2 requests per simulator in flight, "
                             "no queueing)")
    parser.add_argument("--balance-rate", type=float, default=9.0,
                        help="arrivals/s (~60 %% of the fast+slow pair's capacity)")
    parser.add_argument("--failover-rate", type=float, default=10.0, help="arrivals/s")
    parser.add_argument("--peers-venv", default=os.environ.get("PEERS_VENV", "/work/peers-venv"))
    parser.add_argument("--nginx-bin")
    parser.add_argument("--sglang-router-bin")
    parser.add_argument("--litellm-bin")
    parser.add_argument("--sglang-policy", default="round_robin",
                        help="sglang-router's --policy; its default, cache_aware, sends short "
                             "distinct prompts all to one worker (prefix affinity), and "
                             "power_of_two reads load from sglang's own /get_load")
    parser.add_argument("--litellm-strategy", default="",
                        help="LiteLLM router_settings.routing_strategy (default: its own, "
                             "simple-shuffle)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--from-json", metavar="PATH",
                        help="run nothing: rewrite the tables and plots from a saved peers.json")
    args = parser.parse_args(argv)
    args.systems = [s for s in args.systems.split(",") if s]
    args.phases = [p for p in args.phases.split(",") if p]
    unknown = [s for s in args.systems if s not in peer_systems.ALL] + [
        p for p in args.phases if p not in PHASES]
    if unknown:
        parser.error(f"unknown systems/phases: {', '.join(unknown)}")
    if args.quick:
        args.seconds = 1.0
    return args


def report(results: dict[str, object], out: Path, plots: bool) -> None:
    tables = peer_report.tables(results)
    (out / "peers.md").write_text(tables + "\n")
    print("\n" + tables)
    if plots:
        for path in peer_report.plots(results, out):
            print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        report(json.loads(Path(args.from_json).read_text()), out, not args.no_plots)
        return 0
    for tool in ("wrk", "redis-server"):
        if not shutil.which(tool):
            print(f"{tool} is required (Debian: apt-get install {tool})", file=sys.stderr)
            return 2
    if LOAD_CPU is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(LOAD_CPU)})  # this client generates load: off the SUT's CPU
    binaries = peer_systems.Binaries.find(args.peers_venv, args.nginx_bin,
                                          args.sglang_router_bin, args.litellm_bin)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    started = time.time()
    results = run(args, binaries)
    results.update(
        machine=info, versions=versions(binaries), seconds=round(time.time() - started, 1),
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        command=" ".join(["python", "scripts/bench/peers.py", *(argv or sys.argv[1:])]),
        settings={"seconds": args.seconds, "latency_rate": args.latency_rate,
                  "balance_rate": args.balance_rate, "failover_rate": args.failover_rate,
                  "real_ttft_ms": REAL_TTFT_MS, "real_itl_ms": REAL_ITL_MS,
                  "real_tokens": REAL_TOKENS, "real_max_num_seqs": REAL_SLOTS,
                  "slow_factor": SLOW_FACTOR, "sglang_policy": args.sglang_policy,
                  "litellm_strategy": args.litellm_strategy or "simple-shuffle (default)",
                  "sut_cpu": SUT_CPU, "load_cpu": LOAD_CPU})
    (out / "peers.json").write_text(json.dumps(results, indent=2, default=_jsonable))
    report(results, out, not args.no_plots)
    return 0


def _jsonable(value: object) -> object:
    return asdict(value) if hasattr(value, "__dataclass_fields__") else str(value)  # type: ignore


if __name__ == "__main__":
    sys.exit(main())
