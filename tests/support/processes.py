"""Real service processes for tests: started in their own session, stopped by PID, logs kept.

Each process runs `python -m <module>` from this checkout (PYTHONPATH points at the repository
root, so a worktree tests its own code). `stop()` sends SIGTERM to the process group the helper
created and SIGKILL after a grace period; nothing else on the machine is touched.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    env.setdefault("LOG_LEVEL", "info")
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


class ManagedProcess:
    """One child process with its log file; a context manager that always stops it."""

    def __init__(
        self,
        module: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path,
        name: str | None = None,
    ) -> None:
        self.module = module
        self.args = list(args)
        self.env = child_env(env)
        self.log_path = log_path
        self.name = name or module
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed when the process stops
        self._log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=str(REPO_ROOT),
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    async def wait_http(self, url: str, *, timeout: float = 15.0, status: int = 200) -> None:
        """Poll `url` until it answers `status`; fail with the process log if it dies first."""
        deadline = time.monotonic() + timeout
        last: object = None
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc and self.proc.returncode}:\n"
                        f"{self.log_text()[-4000:]}"
                    )
                try:
                    response = await client.get(url)
                    if response.status_code == status:
                        return
                    last = response.status_code
                except httpx.HTTPError as exc:
                    last = exc
                await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.name}: {url} not {status} after {timeout}s (last: {last!r})"
                           f"\n{self.log_text()[-4000:]}")

    def send_signal(self, signum: int) -> None:
        if self.alive():
            os.killpg(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL the process group at once (a crash, as far as peers can tell)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)

    async def wait_exit(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} still running after {timeout}s")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def stop(self, grace: float = 5.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill()
            except ProcessLookupError:
                pass
        # Children the service started (supervised engines) share its process group.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
