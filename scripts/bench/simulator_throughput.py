#!/usr/bin/env python3
"""Throughput of the engine simulator with its latency model at zero, measured with wrk.

    python scripts/bench/simulator_throughput.py [--duration 10] [--connections 64]

Starts the simulator (`--ttft-ms 0 --itl-ms 0`) pinned to CPU 0 and wrk pinned to CPU 1, on
127.0.0.1, and measures non-streaming chat requests/s and streamed SSE events/s. In the same run
it measures the floor - a bare ASGI app on uvicorn + httptools + uvloop sending the same bytes with
no logic (asgi_floor.py) - and reports the simulator/floor ratios. The CPU the server used comes
from /proc/<pid>/stat (utime + stime) before and after each wrk run: on a shared machine CPU per
request holds still where requests/s does not.

Everything runs on loopback, each wrk run is bounded by --duration, and only the processes this
script started are stopped, by PID. Needs wrk; pins with taskset when there are 2+ CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGETS = {"whole": 5_000.0, "stream": 20_000.0}  # req/s, events/s (the simulator's contract)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    server: str
    scenario: str
    requests: int
    seconds: float
    requests_per_s: float
    events_per_request: int
    events_per_s: float
    p50_ms: float
    p99_ms: float
    bad_responses: int
    socket_errors: int
    server_cpu_s: float
    cpu_us_per_request: float
    cpu_us_per_event: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin(cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def post(url: str, body: dict[str, object]) -> bytes:
    request = urllib.request.Request(url, data=json.dumps(body, separators=(",", ":")).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def lua_script(directory: Path, name: str, body: dict[str, object]) -> Path:
    path = directory / f"{name}.lua"
    # Lua long brackets need no escaping of the JSON body.
    path.write_text('wrk.method = "POST"\n'
                    f"wrk.body = [[{json.dumps(body, separators=(',', ':'))}]]\n"
                    'wrk.headers["Content-Type"] = "application/json"\n')
    return path


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(url: str, script: Path, *, connections: int, duration: int) -> dict[str, float]:
    # A generous timeout: on a shared machine a descheduled server is slow, not failing.
    command = [*pin(1), "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
               "--latency", "-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60,
                         check=True).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    if done is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    seconds = float(done.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[done.group(3)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, flags=re.M))
    return {
        "requests": int(done.group(1)),
        "seconds": seconds,
        "bad": int(bad.group(1)) if bad else 0,
        "errors": sum(int(g) for g in errors.groups()) if errors else 0,
        "p50": _ms(latency["50"]) if "50" in latency else float("nan"),
        "p99": _ms(latency["99"]) if "99" in latency else float("nan"),
    }


def measure(server: str, pid: int, url: str, scripts: dict[str, Path], events: dict[str, int],
            *, connections: int, duration: int) -> list[Result]:
    results = []
    for scenario, script in scripts.items():
        before = cpu_seconds(pid)
        wrk = run_wrk(url, script, connections=connections, duration=duration)
        used = cpu_seconds(pid) - before
        requests = max(int(wrk["requests"]), 1)
        per_request = events[scenario]
        results.append(Result(
            server=server, scenario=scenario, requests=int(wrk["requests"]),
            seconds=wrk["seconds"], requests_per_s=wrk["requests"] / wrk["seconds"],
            events_per_request=per_request,
            events_per_s=wrk["requests"] * per_request / wrk["seconds"],
            p50_ms=wrk["p50"], p99_ms=wrk["p99"], bad_responses=int(wrk["bad"]),
            socket_errors=int(wrk["errors"]), server_cpu_s=used,
            cpu_us_per_request=used / requests * 1e6,
            cpu_us_per_event=used / (requests * per_request) * 1e6,
        ))
    return results


def count_events(url: str, body: dict[str, object]) -> int:
    return post(url, body).count(b"data: ")


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    versions = {name: metadata.version(name) for name in ("uvloop", "httptools", "uvicorn")}
    return {"cpu": cpu, "cpus": str(os.cpu_count()), "kernel": platform.release(),
            "python": platform.python_version(), "wrk": wrk_version.split("\n")[0].strip(),
            **versions}


def print_table(results: list[Result]) -> None:
    # "1-core" columns: what one whole core would serve at the CPU cost measured (1 / CPU per
    # request) - the figure that holds still when other work shares the machine.
    header = (f"{'server':<10} {'scenario':<8} {'req/s':>8} {'events/s':>9} {'p50 ms':>7} "
              f"{'p99 ms':>7} {'bad':>4} {'CPU%':>5} {'CPU us/req':>10} {'CPU us/ev':>9} "
              f"{'1-core req/s':>12} {'1-core ev/s':>11}")
    print(header)
    print("-" * len(header))
    for r in results:
        cpu_share = 100.0 * r.server_cpu_s / r.seconds
        print(f"{r.server:<10} {r.scenario:<8} {r.requests_per_s:>8.0f} {r.events_per_s:>9.0f} "
              f"{r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.bad_responses + r.socket_errors:>4} "
              f"{cpu_share:>5.0f} {r.cpu_us_per_request:>10.1f} {r.cpu_us_per_event:>9.2f} "
              f"{1e6 / r.cpu_us_per_request:>12.0f} {1e6 / r.cpu_us_per_event:>11.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=64, help="tokens per streamed answer")
    parser.add_argument("--whole-tokens", type=int, default=16,
                        help="tokens per non-streaming answer")
    parser.add_argument("--no-floor", action="store_true", help="skip the bare ASGI floor")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian package wrk)", file=sys.stderr)
        return 2

    whole_body = {"model": "sim-model", "max_tokens": args.whole_tokens,
                  "messages": [{"role": "user", "content": "Say something."}]}
    stream_body = {**whole_body, "max_tokens": args.tokens, "stream": True,
                   "stream_options": {"include_usage": True}}
    env = {**os.environ, "PYTHONPATH": str(REPO), "LOG_LEVEL": "warning",
           "FLOOR_TOKENS": str(args.tokens), "FLOOR_WHOLE_TOKENS": str(args.whole_tokens)}
    servers = {
        "simulator": [sys.executable, "-m", "simulator", "--ttft-ms", "0", "--itl-ms", "0",
                      "--output-tokens", str(max(args.tokens, args.whole_tokens)),
                      "--log-level", "warning", "--port"],
        "asgi-floor": [sys.executable, "-m", "uvicorn", "asgi_floor:app", "--app-dir",
                       str(Path(__file__).parent), "--http", "httptools", "--loop", "uvloop",
                       "--no-access-log", "--log-level", "warning", "--port"],
    }
    if args.no_floor:
        del servers["asgi-floor"]

    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        scripts = {"whole": lua_script(Path(tmp), "whole", whole_body),
                   "stream": lua_script(Path(tmp), "stream", stream_body)}
        for name, command in servers.items():
            port = free_port()
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            proc = subprocess.Popen([*pin(0), *command, str(port)], env=env, cwd=REPO,
                                    stdout=subprocess.DEVNULL, start_new_session=True)
            try:
                ready = f"http://127.0.0.1:{port}/health" if name == "simulator" else None
                if ready:
                    wait_ready(ready, proc)
                else:
                    deadline = time.monotonic() + 30
                    while True:
                        try:
                            post(url, whole_body)
                            break
                        except OSError:
                            if time.monotonic() > deadline or proc.poll() is not None:
                                raise
                            time.sleep(0.05)
                events = {"whole": 1, "stream": count_events(url, stream_body)}
                results += measure(name, proc.pid, url, scripts, events,
                                   connections=args.connections, duration=args.duration)
            finally:
                stop(proc)

    info = machine()
    print(f"machine: {info}")
    print(f"wrk: -t1 -c{args.connections} -d{args.duration}s, pinned to CPU 1; servers on CPU 0; "
          f"stream = {args.tokens} tokens (+ role, usage, [DONE] events), "
          f"whole = {args.whole_tokens} tokens\n")
    print_table(results)
    sim = {r.scenario: r for r in results if r.server == "simulator"}
    floor = {r.scenario: r for r in results if r.server == "asgi-floor"}
    print()
    whole, stream = sim["whole"], sim["stream"]
    print(f"simulator whole:  {whole.requests_per_s:,.0f} req/s measured "
          f"({whole.requests_per_s / TARGETS['whole']:.1f}x the 5,000 req/s target), "
          f"{1e6 / whole.cpu_us_per_request:,.0f} req/s per whole core "
          f"({1e6 / whole.cpu_us_per_request / TARGETS['whole']:.1f}x)")
    print(f"simulator stream: {stream.events_per_s:,.0f} events/s measured "
          f"({stream.events_per_s / TARGETS['stream']:.1f}x the 20,000 events/s target), "
          f"{1e6 / stream.cpu_us_per_event:,.0f} events/s per whole core "
          f"({1e6 / stream.cpu_us_per_event / TARGETS['stream']:.1f}x)")
    for scenario in floor:
        print(f"simulator/floor {scenario}: throughput "
              f"{sim[scenario].requests_per_s / floor[scenario].requests_per_s:.2f}x, "
              f"CPU per request "
              f"{sim[scenario].cpu_us_per_request / floor[scenario].cpu_us_per_request:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "args": vars(args) | {"json": None},
                                         "results": [asdict(r) for r in results]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
