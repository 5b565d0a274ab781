"""Benchmark plumbing: processes we start (and only those), their CPU and memory from /proc, wrk.

Every process is started on 127.0.0.1 with a free port, optionally pinned to CPUs with `taskset`,
in its own session, and stopped by PID (SIGTERM, then SIGKILL) - nothing else is touched.
CPU is utime + stime of the process and its live descendants (threads included), read from
/proc/<pid>/stat: the figure that holds still on a shared machine, unlike requests per second.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(_children(current))
    return tree


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its descendants, in seconds."""
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    """Sum of VmHWM (peak resident set) over the process tree, MiB."""
    total_kib = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.popen.wait(timeout=8)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
            except ProcessLookupError:
                pass


class Procs:
    """Starts processes and stops exactly those, in reverse order."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Proc] = []

    def start(self, name: str, argv: list[str], *, cpus: str | None = None,
              env: dict[str, str] | None = None, cwd: str | None = None) -> Proc:
        if cpus and shutil.which("taskset"):
            argv = ["taskset", "-c", cpus, *argv]
        log = self.log_dir / f"{name}.log"
        handle = open(log, "ab")  # noqa: SIM115 - owned by the process
        popen = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT,
                                 env={**os.environ, **(env or {})}, cwd=cwd,
                                 start_new_session=True)
        proc = Proc(name, popen, log)
        self.started.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.started:
            self.started.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()
        self.started.clear()


def wait_http(url: str, proc: Proc, timeout: float = 60.0, status: int = 200) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == status:
                    return
        except Exception:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{proc.name}: {url} not ready:\n{proc.log.read_text()[-3000:]}")


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url: str, body: str, *, connections: int, seconds: float, cpus: str | None,
        headers: dict[str, str] | None = None, timeout_s: float = 10.0) -> WrkResult:
    script = "\n".join([
        'wrk.method = "POST"',
        f"wrk.body = [[{body}]]",
        'wrk.headers["Content-Type"] = "application/json"',
        *[f'wrk.headers["{k}"] = "{v}"' for k, v in (headers or {}).items()],
    ])
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        path = f.name
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            f"--timeout={round(timeout_s)}s", "--latency", "-s", path, url]
    if cpus and shutil.which("taskset"):
        argv = ["taskset", "-c", cpus, *argv]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(path)
    out = done.stdout
    if "requests in" not in out:
        raise RuntimeError(f"wrk failed: {done.stdout}\n{done.stderr}")
    requests = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))  # type: ignore
    duration = re.search(r"requests in ([\d.]+)(us|ms|s|m)", out)
    seconds_run = _ms(duration.group(1) + duration.group(2)) / 1000 if duration else seconds
    p50 = re.search(r"50%\s+([\d.]+\w+)", out)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out)
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(x) for x in socket_errors.groups())
    return WrkResult(requests, seconds_run, _ms(p50.group(1)) if p50 else float("nan"),
                     _ms(p99.group(1)) if p99 else float("nan"), errors)
