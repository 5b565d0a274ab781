"""Shared fixtures: a real redis-server per session, per-test key prefixes, managed processes."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.support.processes import ManagedProcess
from tests.support.redis_server import RedisServer

IN_CI = bool(os.environ.get("CI"))


def _require_binary(name: str) -> None:
    if shutil.which(name) is None:
        message = f"{name} is not installed (Debian package: see .ci/run)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session; tests isolate themselves with key prefixes."""
    _require_binary("redis-server")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """Private redis-servers for tests that stop, restart or flush theirs."""
    _require_binary("redis-server")
    servers: list[RedisServer] = []

    def make() -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}").start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def key_prefix() -> str:
    return f"flotilla-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def promtool() -> str:
    _require_binary("promtool")
    return shutil.which("promtool")  # type: ignore[return-value]


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[Callable[..., ManagedProcess]]:
    """Start service processes (`python -m module args`); every one is stopped at teardown."""
    started: list[ManagedProcess] = []

    def start(module: str, *args: str, env: dict[str, str] | None = None,
              name: str | None = None) -> ManagedProcess:
        label = name or module.replace(".", "-")
        proc = ManagedProcess(module, args, env=env, name=label,
                              log_path=tmp_path / "logs" / f"{label}-{len(started)}.log")
        started.append(proc.start())
        return proc

    yield start
    for proc in reversed(started):
        proc.stop()
