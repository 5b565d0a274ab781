"""The worker token file: read at start, written atomically, shared under a lock.

The token the control plane hands out at the first registration is the worker's only credential,
so it is kept in `WORKER_AUTH_TOKEN_FILE` (mode 0600) and read again after a restart. Writing is
atomic: a temporary file created 0600 in the same directory, fsync'd, renamed over the old one,
then the directory fsync'd, so a crash leaves either the old token or the new one, never half of
one. Two agents on one machine (vLLM and TEI beside each other) may share the file: `locked()`
holds an exclusive `flock` on `<file>.lock` around a registration, so only one of them bootstraps
and the other reads what it wrote. The lock is polled without blocking so the event loop never
waits on it; the file operations are small and run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from worker_agent.errors import TokenFileError

log = logging.getLogger(__name__)

LOCK_POLL_S = 0.05


def _read(path: Path) -> str | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Someone widened it (a copy, an umask mistake): the token must stay private.
        log.warning("worker token file %s was readable by others; setting mode 0600", path)
        os.chmod(path, 0o600)
    token = path.read_text(encoding="utf-8").strip()
    return token or None


def _write(path: Path, token: str) -> None:
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file with O_EXCL and mode 0600: never readable by others, not even
    # for the instant before a chmod.
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class TokenFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    async def read(self) -> str | None:
        try:
            return await asyncio.to_thread(_read, self.path)
        except OSError as exc:
            raise TokenFileError(f"cannot read {self.path}: {exc.strerror}") from exc

    async def write(self, token: str) -> None:
        try:
            await asyncio.to_thread(_write, self.path, token)
        except OSError as exc:
            raise TokenFileError(f"cannot write {self.path}: {exc.strerror}") from exc

    @contextlib.asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        """Hold the exclusive lock shared by every agent using this token file."""
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise TokenFileError(f"cannot open {self.lock_path}: {exc.strerror}") from exc
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(LOCK_POLL_S)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
