"""The token file: private, atomic, reloadable, shared under a lock."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from worker_agent.tokens import TokenFile


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_written_token_is_private_and_read_back(tmp_path: Path) -> None:
    store = TokenFile(tmp_path / "state" / "worker-token")
    assert await store.read() is None
    await store.write("wt-flt-first")
    assert mode(store.path) == 0o600
    assert await store.read() == "wt-flt-first"
    await store.write("wt-flt-second")
    assert await TokenFile(store.path).read() == "wt-flt-second"  # a restarted agent
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["worker-token"]


async def test_a_token_file_others_can_read_is_made_private_again(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("wt-flt-x\n")
    os.chmod(path, 0o644)
    assert await TokenFile(path).read() == "wt-flt-x"
    assert mode(path) == 0o600


async def test_an_empty_file_holds_no_token(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("\n")
    assert await TokenFile(path).read() is None


async def test_the_lock_lets_one_holder_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "token"
    order: list[str] = []

    async def hold(name: str, seconds: float) -> None:
        async with TokenFile(path).locked():
            order.append(f"{name} in")
            await asyncio.sleep(seconds)
            order.append(f"{name} out")

    first = asyncio.create_task(hold("a", 0.3))
    await asyncio.sleep(0.05)
    await hold("b", 0)
    await first
    assert order == ["a in", "a out", "b in", "b out"]
    assert mode(tmp_path / "token.lock") == 0o600
