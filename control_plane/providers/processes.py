"""Process identity for the local provider: signal only what we started, even after a restart.

A PID alone is not an identity: after a process exits its PID can be reused by anything. So every
process we record carries its start time (field 22 of /proc/<pid>/stat, in clock ticks since
boot); a PID whose start time differs is someone else's and is never signalled. Linux only (the
local provider runs simulated workers on a developer's or CI machine).
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class ProcessRef:
    pid: int
    start_ticks: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        ticks = start_ticks(pid)
        return None if ticks is None else cls(pid, ticks)

    def alive(self) -> bool:
        """Running (not a zombie) and still the process we recorded."""
        stat = _stat(self.pid)
        return stat is not None and stat[0] != "Z" and stat[1] == self.start_ticks

    def signal(self, signum: int) -> bool:
        """Send `signum` if this is still our process; True if it was sent."""
        if not self.alive():
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, signum)
            return True
        return False

    def kill(self) -> bool:
        return self.signal(signal.SIGKILL)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in ticks) from /proc/<pid>/stat, or None if there is none."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[19])


def start_ticks(pid: int) -> int | None:
    stat = _stat(pid)
    return None if stat is None else stat[1]


def descendants(pid: int) -> list[ProcessRef]:
    """Every live descendant of `pid` (children of all its threads, recursively)."""
    found: list[ProcessRef] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        for task in _list_dir(PROC / str(parent) / "task"):
            try:
                children = (task / "children").read_text().split()
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            for child in children:
                ref = ProcessRef.of(int(child))
                if ref is not None:
                    found.append(ref)
                    queue.append(ref.pid)
    return found


def _list_dir(path: Path) -> list[Path]:
    try:
        return list(path.iterdir())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
