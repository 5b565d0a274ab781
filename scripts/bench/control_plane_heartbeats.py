"""Heartbeat cost of one control-plane process with 1,000 workers (the scale target: 100/s).

Starts a real redis-server and the control plane (`python -m control_plane`) as real processes on
127.0.0.1, registers N simulated agents (a small asyncio client), answers every agent's /readyz
probe from one tiny in-process HTTP server (so the control plane's probe loop runs for real: each
worker is probed every CONTROL_PLANE_PROBE_INTERVAL_S, as in production), then drives heartbeats
open-loop (each sent at its scheduled time, whatever the previous ones are doing) at each rate for
a bounded time and reports, per rate:

  - control-plane CPU per heartbeat (utime + stime from /proc/<pid>/stat), total and marginal
    (minus the background cost measured in an idle phase: probes, expiry and store checks)
  - Redis commands per heartbeat (INFO commandstats delta) and Redis CPU per heartbeat
  - p50 / p99 / max heartbeat latency as the agent sees it, achieved rate, errors

For scale, the same client drives a bare Starlette app on the same uvicorn set-up (fleet.serving)
that parses the JSON body and answers `{}`: the floor of any HTTP endpoint here. The ratio
"control plane / bare" says what the registry, validation, tokens and Redis add.

Run from the repository root:
    python scripts/bench/control_plane_heartbeats.py [--workers 1000] [--rates 100,200,400,800]
                                                     [--duration 20] [--idle 8] [--env N=V]
(BENCH_KEEP=1 keeps the temporary directory with the control plane's log.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import aiohttp
import orjson

ROOT = pathlib.Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "bench-admin-token-0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")

BARE_APP = """
import sys, orjson
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from fleet.serving import Listener, run, serve_apps

async def beat(request):
    orjson.loads(await request.body())
    return Response(b'{"heartbeat_interval_s": 10.0, "drain": false}',
                    media_type="application/json")

app = Starlette(routes=[Route("/v1/workers/{worker_id:path}/heartbeat", beat, methods=["POST"]),
                        Route("/healthz", lambda r: Response(b"ok"))])
run(lambda: serve_apps([Listener(app, "127.0.0.1", int(sys.argv[1]))]))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


class Redis:
    """A private redis-server, plus the two INFO figures the benchmark reads."""

    def __init__(self, workdir: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def info(self, section: str) -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(f"INFO {section}\r\n".encode())
            await writer.drain()
            header = await reader.readline()
            size = int(header[1:].strip())
            body = await reader.readexactly(size + 2)
            return body.decode()
        finally:
            writer.close()

    async def commands(self) -> int:
        text = await self.info("commandstats")
        total = 0
        for line in text.splitlines():
            if line.startswith("cmdstat_") and "calls=" in line:
                total += int(line.split("calls=")[1].split(",")[0])
        return total

    async def cpu(self) -> float:
        values = dict(line.split(":", 1) for line in (await self.info("cpu")).splitlines()
                      if ":" in line)
        return float(values["used_cpu_sys"]) + float(values["used_cpu_user"])

    async def wait(self) -> None:
        for _ in range(200):
            try:
                await self.info("server")
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError("redis-server did not start")


class ReadyzResponder:
    """Answers every GET .../readyz with 200 (all simulated agents share it)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.hits = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port,
                                                 backlog=1024)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = b'{"ready": true, "reason": "ready"}'
        reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d" \
                b"\r\n\r\n%s" % (len(body), body)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.hits += 1
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def start_process(args: list[str], env: dict[str, str], log_path: str) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, *args], cwd=str(ROOT), env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


async def wait_http(session: aiohttp.ClientSession, url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


@dataclass
class Worker:
    worker_id: str
    token: str
    path: str
    headers: dict[str, str]


def heartbeat_body(n: int) -> bytes:
    return orjson.dumps({"status": "ready", "model_id": "bench-model", "queue_depth": n % 7,
                         "inflight": n % 5, "running": n % 5, "waiting": n % 3,
                         "gpu_util": 0.42, "kv_cache_usage": 0.3, "ttft_p95_ms": 180.0,
                         "e2e_p95_ms": 2400.0, "requests_per_s": 3.5})


async def register_all(session: aiohttp.ClientSession, base: str, count: int,
                       readyz_port: int) -> list[Worker]:
    slots = asyncio.Semaphore(32)

    async def one(i: int) -> Worker:
        body = {"instance_id": f"bench-i-{i}", "model_id": "bench-model",
                "url": f"http://127.0.0.1:9/{i}",
                "agent_url": f"http://127.0.0.1:{readyz_port}/agent/{i}"}
        async with slots, session.post(f"{base}/v1/workers/register", json=body) as response:
            data = await response.json()
            if response.status != 201:
                raise RuntimeError(f"registration failed: {response.status} {data}")
        worker_id = data["worker_id"]
        return Worker(worker_id, data["bootstrap_token"], f"{base}/v1/workers/{worker_id}"
                      f"/heartbeat", {"authorization": f"Bearer {data['bootstrap_token']}",
                                      "content-type": "application/json"})

    return list(await asyncio.gather(*(one(i) for i in range(count))))


@dataclass
class PhaseResult:
    rate: float
    sent: int
    ok: int
    errors: int
    seconds: float
    latencies: list[float]
    cpu_s: float
    redis_commands: int
    redis_cpu_s: float


async def drive(session: aiohttp.ClientSession, workers: list[Worker], rate: float,
                duration: float, measure: MeasureTarget, start_index: int = 0,
                max_inflight: int = 2048) -> PhaseResult:
    """Send heartbeats open-loop at `rate` for `duration` seconds, round-robin over workers."""
    latencies: list[float] = []
    errors = 0
    inflight: set[asyncio.Task[None]] = set()
    total = int(rate * duration)
    bodies = [heartbeat_body(n) for n in range(35)]

    async def one(worker: Worker, body: bytes) -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            async with session.post(worker.path, data=body, headers=worker.headers) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
                    return
        except aiohttp.ClientError:
            errors += 1
            return
        latencies.append(time.perf_counter() - started)

    before = await measure.snapshot()
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n in range(total):
        due = start + n / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(inflight) >= max_inflight:
            errors += 1  # the control plane fell this far behind: count it, do not pile up
            continue
        worker = workers[(start_index + n) % len(workers)]
        task = asyncio.create_task(one(worker, bodies[n % len(bodies)]))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
    if inflight:
        await asyncio.wait(inflight, timeout=30)
    seconds = loop.time() - start
    after = await measure.snapshot()
    return PhaseResult(rate, total, len(latencies), errors, seconds, sorted(latencies),
                       after[0] - before[0], after[1] - before[1], after[2] - before[2])


class MeasureTarget:
    def __init__(self, pid: int, redis: Redis | None) -> None:
        self.pid = pid
        self.redis = redis

    async def snapshot(self) -> tuple[float, int, float]:
        if self.redis is None:
            return cpu_seconds(self.pid), 0, 0.0
        return cpu_seconds(self.pid), await self.redis.commands(), await self.redis.cpu()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


async def run(args: argparse.Namespace) -> int:
    workdir = tempfile.mkdtemp(prefix="flotilla-bench-cp-")
    redis = Redis(workdir)
    responder = ReadyzResponder()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await redis.wait()
        await responder.start()
        port, bare_port = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis.url,
               "ADMIN_TOKEN": ADMIN_TOKEN, "HEARTBEAT_INTERVAL_S": "10",
               "CONTROL_PLANE_PROBE_INTERVAL_S": str(args.probe_interval),
               "LOG_LEVEL": "warning", **dict(kv.split("=", 1) for kv in args.env)}
        cp = start_process(["-m", "control_plane", "--host", "127.0.0.1", "--port", str(port)],
                           env, f"{workdir}/control-plane.log")
        procs.append(cp)
        bare = start_process(["-c", BARE_APP, str(bare_port)], env, f"{workdir}/bare.log")
        procs.append(bare)
        base = f"http://127.0.0.1:{port}"
        connector = aiohttp.TCPConnector(limit=256, limit_per_host=256)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await wait_http(session, f"{base}/readyz")
            await wait_http(session, f"http://127.0.0.1:{bare_port}/healthz")
            # The bare endpoint first: it needs no workers, and the control plane's workers
            # must not stay silent long enough to expire between its phases.
            bare_workers = [Worker(f"w{i}", "-", f"http://127.0.0.1:{bare_port}/v1/workers/w{i}"
                                   f"/heartbeat", {"content-type": "application/json"})
                            for i in range(args.workers)]
            bare_result = await drive(session, bare_workers, args.rates[0], args.duration,
                                      MeasureTarget(bare.pid, None))
            stop_process(bare)
            started = time.perf_counter()
            workers = await register_all(session, base, args.workers, responder.port)
            print(f"registered {len(workers)} workers in {time.perf_counter() - started:.1f} s")
            measure = MeasureTarget(cp.pid, redis)
            # One round at the target rate makes every worker report `ready`; probes follow.
            warm = await drive(session, workers, args.rates[0], len(workers) / args.rates[0],
                               measure)
            ready = await count_ready(session, base)
            print(f"warm-up round: {warm.ok}/{warm.sent} ok; {ready} workers ready, "
                  f"{responder.hits} probes answered")
            idle_before = await measure.snapshot()
            await asyncio.sleep(args.idle)
            idle_after = await measure.snapshot()
            idle_cpu_per_s = (idle_after[0] - idle_before[0]) / args.idle
            idle_cmds_per_s = (idle_after[1] - idle_before[1]) / args.idle
            results = []
            offset = 0
            for rate in args.rates:
                result = await drive(session, workers, rate, args.duration, measure, offset)
                offset += result.sent
                results.append(result)
            still_ready = await count_ready(session, base)
        report(args, results, bare_result, idle_cpu_per_s, idle_cmds_per_s, ready,
               still_ready, responder.hits)
        return 0
    finally:
        responder.close()
        for proc in procs:
            stop_process(proc)
        if redis.proc.poll() is None:
            redis.proc.terminate()
            redis.proc.wait(timeout=10)
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print("kept", workdir)


async def count_ready(session: aiohttp.ClientSession, base: str) -> int:
    async with session.get(f"{base}/v1/workers",
                           headers={"authorization": f"Bearer {ADMIN_TOKEN}"}) as response:
        data = await response.json()
    return sum(1 for w in data["data"] if w["ready"])


def latency_columns(result: PhaseResult) -> str:
    values = result.latencies
    worst = values[-1] if values else float("nan")
    return (f"{percentile(values, 0.5) * 1e3:7.2f} {percentile(values, 0.99) * 1e3:7.2f} "
            f"{worst * 1e3:7.2f}")


def report(args: argparse.Namespace, results: list[PhaseResult], bare: PhaseResult,
           idle_cpu_per_s: float, idle_cmds_per_s: float, ready: int, still_ready: int,
           probes: int) -> None:
    print()
    print(f"{args.workers} workers, heartbeat interval 10 s, probe interval "
          f"{args.probe_interval:g} s, {args.duration:g} s per rate")
    print(f"background (no heartbeats, {args.idle:g} s): control plane "
          f"{idle_cpu_per_s * 100:.1f}% of a core, {idle_cmds_per_s:.1f} Redis commands/s "
          f"(probes, expiry, store checks)")
    header = (f"{'target/s':>8} {'achieved/s':>10} {'ok':>6} {'err':>4} {'p50 ms':>7} "
              f"{'p99 ms':>7} {'max ms':>7} {'cp cpu %':>8} {'us/hb':>6} {'marg us':>7} "
              f"{'redis cmd/hb':>12} {'redis us/hb':>11}")
    print(header)
    print("-" * len(header))
    for r in results:
        per_hb = r.cpu_s / max(1, r.ok)
        marginal = (r.cpu_s - idle_cpu_per_s * r.seconds) / max(1, r.ok)
        print(f"{r.rate:8.0f} {r.ok / r.seconds:10.1f} {r.ok:6d} {r.errors:4d} "
              f"{latency_columns(r)} "
              f"{r.cpu_s / r.seconds * 100:8.1f} {per_hb * 1e6:6.0f} {marginal * 1e6:7.0f} "
              f"{r.redis_commands / max(1, r.ok):12.2f} {r.redis_cpu_s / max(1, r.ok) * 1e6:11.1f}")
    b = bare
    bare_per = b.cpu_s / max(1, b.ok)
    print(f"{'bare':>8} {b.ok / b.seconds:10.1f} {b.ok:6d} {b.errors:4d} {latency_columns(b)} "
          f"{b.cpu_s / b.seconds * 100:8.1f} {bare_per * 1e6:6.0f}")
    first = results[0]
    marginal = (first.cpu_s - idle_cpu_per_s * first.seconds) / max(1, first.ok)
    print()
    print(f"at {first.rate:g}/s: control plane / bare Starlette endpoint = "
          f"{(first.cpu_s / max(1, first.ok)) / bare_per:.2f}x CPU per heartbeat "
          f"(marginal {marginal / bare_per:.2f}x)")
    print(f"ready workers: {ready} after warm-up, {still_ready} at the end; "
          f"{probes} probes answered")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--rates", default="100,200,400,800",
                        help="heartbeats per second to try, first = the scale target")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per rate")
    parser.add_argument("--idle", type=float, default=8.0, help="seconds of the idle phase")
    parser.add_argument("--probe-interval", type=float, default=10.0)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the control plane (repeatable)")
    args = parser.parse_args()
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if args.workers > 5000 or max(args.rates) > 5000 or args.duration > 120:
        parser.error("bounded: at most 5,000 workers, 5,000 heartbeats/s, 120 s per rate")
    if args.idle > 15:
        parser.error("--idle must stay under 15 s, or workers expire (3 x 10 s heartbeats)")
    import uvloop

    return uvloop.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
