"""The router holding many concurrent streams for a minute: is its memory flat?

    python scripts/bench/router_streams.py                       # 1,000 streams, 60 s hold
    python scripts/bench/router_streams.py --streams 2000 --hold 60
    python scripts/bench/router_streams.py --streams 200 --hold 10 --no-doc --json out.json

Starts (on 127.0.0.1, stopped here by PID) a redis-server, two simulators and one router process,
seeds the store as the control plane writes it (scripts/bench/router_bench.py), then opens
`--streams` streaming chat completions through the router over `--ramp` seconds. Each stream is
paced by the simulator (one token every `--itl-ms`) to outlast the ramp plus `--hold`, so every
stream is open during the whole hold. The client is aiohttp reading raw bytes (the SDK's per-event
parsing for thousands of streams would cost the shared machine a core; the chaos suite covers the
SDK). Every second it samples the router's resident memory (VmRSS of its process), the first
simulator's (the engine holds the same streams: a reference), the streams open and the events
received. After the streams end it keeps sampling for `--tail` seconds.

Writes the samples to docs/router-streams-rss.csv and a plot to docs/router-streams-rss.png
(matplotlib: `pip install -e '.[bench]'`), and the figures between the `router-streams:begin` /
`router-streams:end` markers of docs/reliability.md (unless `--no-doc`).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Procs, cpu_seconds, free_port, wait_http  # noqa: E402
from router_bench import MODEL, REPO, seed_store  # noqa: E402

DOC = REPO / "docs" / "reliability.md"
CSV_PATH = REPO / "docs" / "router-streams-rss.csv"
PNG_PATH = REPO / "docs" / "router-streams-rss.png"
BEGIN, END = "<!-- router-streams:begin -->", "<!-- router-streams:end -->"


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


@dataclass
class Client:
    url: str
    key: str
    open: int = 0
    opened: int = 0
    completed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    events: int = 0
    bytes: int = 0  # SSE bytes received, all streams

    async def stream(self, session: aiohttp.ClientSession, tokens: int) -> None:
        body = {"model": MODEL, "stream": True, "max_tokens": tokens,
                "messages": [{"role": "user", "content": "hold this stream"}]}
        seen_first = done = False
        try:
            async with session.post(self.url + "/v1/chat/completions", json=body,
                                    headers={"Authorization": f"Bearer {self.key}"}) as response:
                if response.status != 200:
                    self._error(f"status {response.status}")
                    return
                async for line in response.content:
                    self.bytes += len(line)
                    if not line.startswith(b"data:"):
                        continue
                    self.events += 1
                    if not seen_first:
                        seen_first = True
                        self.open += 1
                        self.opened += 1
                    if line.startswith(b"data: [DONE]"):
                        done = True
                    elif b'"error"' in line:
                        self._error("error event")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._error(type(exc).__name__)
        finally:
            if seen_first:
                self.open -= 1
        if done:
            self.completed += 1
        elif seen_first:
            self._error("ended without [DONE]")

    def _error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1


async def drive(args: argparse.Namespace, url: str, key: str, router_pid: int,
                sim_pid: int) -> dict[str, object]:
    client = Client(url, key)
    tokens = stream_tokens(args)
    samples: list[dict[str, object]] = []
    t0 = time.monotonic()
    phase = "idle"
    all_open_s = None

    async def sample() -> None:
        while True:
            samples.append({"t_s": round(time.monotonic() - t0, 1), "phase": phase,
                            "open_streams": client.open, "events": client.events,
                            "mib_relayed": round(client.bytes / 2**20, 2),
                            "router_rss_mib": round(rss_mib(router_pid), 2),
                            "sim_rss_mib": round(rss_mib(sim_pid), 2)})
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample())
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=30)
    cpu_before = cpu_seconds(router_pid)
    try:
        await asyncio.sleep(args.idle)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            phase = "ramp"
            tasks = []
            for i in range(args.streams):
                tasks.append(asyncio.create_task(client.stream(session, tokens)))
                delay = (i + 1) * args.ramp / args.streams - (time.monotonic() - t0 - args.idle)
                if delay > 0:
                    await asyncio.sleep(delay)
            # The hold starts once every stream has its first event (on a busy machine opening
            # lags the ramp), or when the slack for that is spent.
            slack_end = time.monotonic() + args.open_slack
            while client.open + sum(client.errors.values()) < args.streams \
                    and time.monotonic() < slack_end:
                await asyncio.sleep(0.1)
            all_open_s = round(time.monotonic() - t0 - args.idle, 1)
            phase = "hold"
            await asyncio.sleep(args.hold)
            phase = "drain"
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=args.ramp + args.hold + 60)
        phase = "after"
        await asyncio.sleep(args.tail)
    finally:
        sampler.cancel()
    cpu_used = cpu_seconds(router_pid) - cpu_before
    return {"client": client, "samples": samples, "tokens": tokens, "router_cpu_s": cpu_used,
            "opened_in_s": all_open_s}


def stream_tokens(args: argparse.Namespace) -> int:
    """Every stream outlasts the ramp, the slack for opening and the hold: all of them are open
    during the hold."""
    return math.ceil((args.ramp + args.open_slack + args.hold + 2) * 1000 / args.itl_ms)


def figures(args: argparse.Namespace, run: dict[str, object]) -> dict[str, object]:
    samples: list[dict] = run["samples"]  # type: ignore[assignment]
    client: Client = run["client"]  # type: ignore[assignment]
    hold = [s for s in samples if s["phase"] == "hold"]
    idle = [s for s in samples if s["phase"] == "idle"]
    after = [s for s in samples if s["phase"] == "after"]
    baseline = idle[-1]["router_rss_mib"] if idle else samples[0]["router_rss_mib"]
    start, end = hold[0]["router_rss_mib"], hold[-1]["router_rss_mib"]
    peak = max(s["router_rss_mib"] for s in samples)
    reached = max(s["open_streams"] for s in samples)
    sim_start, sim_end = hold[0]["sim_rss_mib"], hold[-1]["sim_rss_mib"]
    return {
        "streams_target": args.streams, "streams_reached": reached,
        "streams_completed": client.completed, "errors": client.errors,
        "events": client.events, "hold_s": args.hold, "ramp_s": args.ramp,
        "itl_ms": args.itl_ms, "tokens_per_stream": run["tokens"],
        "opened_in_s": run["opened_in_s"],
        "router_rss_idle_mib": baseline, "router_rss_hold_start_mib": start,
        "router_rss_hold_end_mib": end, "router_rss_peak_mib": peak,
        "router_rss_after_mib": after[-1]["router_rss_mib"] if after else None,
        "router_growth_over_hold_mib": round(end - start, 2),
        "router_growth_over_hold_pct": round(100 * (end - start) / start, 2),
        "router_kib_per_stream": round((start - baseline) * 1024 / max(reached, 1), 1),
        # The relay keeps each open stream's transcript (router/transcript.py, up to 1 MiB per
        # stream, freed when it ends): growth over the hold is compared with what was relayed.
        "mib_relayed_during_hold": round(hold[-1]["mib_relayed"] - hold[0]["mib_relayed"], 2),
        "sim_rss_hold_start_mib": sim_start, "sim_rss_hold_end_mib": sim_end,
        "router_cpu_s": round(run["router_cpu_s"], 2),  # type: ignore[arg-type]
        "samples": samples,
    }


def write_csv(path: Path, samples: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(samples[0]))
        writer.writeheader()
        writer.writerows(samples)


def plot(path: Path, result: dict[str, object]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples: list[dict] = result["samples"]  # type: ignore[assignment]
    t = [s["t_s"] for s in samples]
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    ax.plot(t, [s["router_rss_mib"] for s in samples], label="router RSS (MiB)", color="C0")
    ax.plot(t, [s["sim_rss_mib"] for s in samples], label="simulator RSS (MiB)", color="C2",
            linestyle="--")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("resident memory (MiB)")
    ax.set_ylim(bottom=0)
    streams = ax.twinx()
    streams.plot(t, [s["open_streams"] for s in samples], label="open streams", color="C1",
                 alpha=0.6)
    streams.set_ylabel("open streams")
    streams.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()
    more = streams.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="lower center")
    ax.set_title(f"Router holding {result['streams_reached']} concurrent streams "
                 f"({result['hold_s']:.0f} s hold)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def render(result: dict[str, object], command: str) -> str:
    r = result
    errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "none"  # type: ignore
    return "\n".join([
        BEGIN,
        f"Recorded {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(r.get('recorded_at')))} "
        f"with `{command}` ({os.cpu_count()} CPUs shared with other work, load average "
        f"{r.get('load_average') or 'not recorded'}).",
        "",
        "| figure | value |", "|---|---|",
        f"| concurrent streams asked / reached / completed | {r['streams_target']} / "
        f"{r['streams_reached']} / {r['streams_completed']} |",
        f"| errors | {errors} |",
        f"| all streams open after | {r['opened_in_s']} s (ramp {r['ramp_s']:.0f} s) |",
        f"| hold | {r['hold_s']:.0f} s, one event every "
        f"{r['itl_ms']} ms per stream ({r['tokens_per_stream']} tokens), {r['events']} events |",
        f"| router RSS idle / hold start / hold end / peak / after | "
        f"{r['router_rss_idle_mib']:.1f} / {r['router_rss_hold_start_mib']:.1f} / "
        f"{r['router_rss_hold_end_mib']:.1f} / {r['router_rss_peak_mib']:.1f} / "
        f"{r['router_rss_after_mib']} MiB |",
        f"| router growth over the hold | {r['router_growth_over_hold_mib']:+.2f} MiB "
        f"({r['router_growth_over_hold_pct']:+.2f} %) |",
        f"| router memory per open stream, at its start | {r['router_kib_per_stream']:.1f} KiB |",
        f"| SSE bytes relayed to the clients during the hold | "
        f"{r['mib_relayed_during_hold']:.2f} MiB (router growth / bytes relayed: "
        f"{r['router_growth_over_hold_mib'] / max(r['mib_relayed_during_hold'], 0.01):.2f}) |",
        f"| simulator RSS hold start / end (reference) | {r['sim_rss_hold_start_mib']:.1f} / "
        f"{r['sim_rss_hold_end_mib']:.1f} MiB |",
        f"| router CPU over the run | {r['router_cpu_s']:.1f} s |",
        "",
        "![router RSS while holding the streams](router-streams-rss.png) "
        "(samples: [router-streams-rss.csv](router-streams-rss.csv))",
        END,
    ])


def write_doc(block: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Reliability\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        DOC.write_text(head + block + rest.split(END, 1)[1])
    else:
        DOC.write_text(text.rstrip("\n") + "\n\n## Router under many concurrent streams\n\n"
                       + block + "\n")


def run(args: argparse.Namespace) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="flotilla-streams-"))
    procs = Procs(workdir)
    try:
        redis_port = free_port()
        redis = procs.start("redis", ["redis-server", "--port", str(redis_port), "--bind",
                                      "127.0.0.1", "--save", "", "--appendonly", "no"])
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        sims, sim_procs = [], []
        per_sim = math.ceil(args.streams / 2) + 16
        for i in range(2):
            port = free_port()
            proc = procs.start(f"sim{i}", [sys.executable, "-m", "simulator", "--port", str(port),
                                           "--model", MODEL, "--ttft-ms", "20", "--itl-ms",
                                           str(args.itl_ms), "--max-num-seqs", str(per_sim),
                                           "--output-tokens", str(stream_tokens(args)),
                                           "--batch-slowdown", "0", "--log-level", "warning"],
                               cwd=str(REPO), env={"PYTHONPATH": str(REPO)})
            sims.append(f"http://127.0.0.1:{port}")
            sim_procs.append(proc)
            wait_http(sims[-1] + "/health", proc)
        for _ in range(50):
            if redis.alive() and _ping(redis_port):
                break
            time.sleep(0.1)
        key = asyncio.run(seed_store(redis_url, "streams", sims))
        port = free_port()
        # The router's default pool (512 connections per worker) would hold back the streams
        # beyond it (they wait in the router for a connection): sized to the streams here.
        pool = args.max_connections_per_worker or per_sim
        router = procs.start("router", [sys.executable, "-m", "router", "--host", "127.0.0.1",
                                        "--port", str(port), "--redis-url", redis_url,
                                        "--store-prefix", "streams", "--log-level", "warning",
                                        "--log-format", "text",
                                        "--max-connections-per-worker", str(pool)],
                             cwd=str(REPO), env={"PYTHONPATH": str(REPO)})
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/readyz", router)
        outcome = asyncio.run(drive(args, url, key, router.pid, sim_procs[0].pid))
        result = figures(args, outcome)
        result["recorded_at"] = time.time()
        result["load_average"] = round(os.getloadavg()[0], 1)
        return result
    finally:
        procs.stop_all()
        if args.keep_logs:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _ping(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds to open them all")
    parser.add_argument("--hold", type=float, default=60.0, help="seconds all are open")
    parser.add_argument("--open-slack", type=float, default=30.0,
                        help="longest wait after the ramp for every stream's first event")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds sampled before")
    parser.add_argument("--tail", type=float, default=5.0, help="seconds sampled after")
    parser.add_argument("--max-connections-per-worker", type=int, default=0,
                        help="the router's pool per worker (default: the streams per worker)")
    parser.add_argument("--itl-ms", type=int, default=500, help="pace of every stream")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    parser.add_argument("--json", type=Path, help="write the figures and samples here")
    parser.add_argument("--no-doc", action="store_true",
                        help="do not write docs/ (CSV, PNG, reliability.md)")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="no run: write docs/ from a result saved with --json")
    args = parser.parse_args(argv)
    if args.render:
        result = json.loads(args.render.read_text())
    elif not shutil.which("redis-server"):
        print("redis-server is required", file=sys.stderr)
        return 2
    else:
        result = run(args)
        result["command"] = "python scripts/bench/router_streams.py " + " ".join(
            a for a in (argv if argv is not None else sys.argv[1:]) if a != "--no-doc")
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_doc:
        write_csv(CSV_PATH, result["samples"])  # type: ignore[arg-type]
        plot(PNG_PATH, result)
        write_doc(render(result, str(result.get("command", "")).strip()))
        print(f"wrote {CSV_PATH.name}, {PNG_PATH.name} and {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
