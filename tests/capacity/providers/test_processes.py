"""Process identity: a PID is only signalled while its recorded start time still matches."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from control_plane.providers.processes import ProcessRef, descendants

PARENT = ("import subprocess, sys, time; "
          "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
          "time.sleep(60)")


def wait_for(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise TimeoutError


def test_ref_tracks_a_live_process_and_sees_it_gone() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ref = ProcessRef.of(proc.pid)
        assert ref is not None and ref.alive()
        assert ref.signal(signal.SIGTERM)
        proc.wait(timeout=10)
        assert not ref.alive()
        assert not ref.kill()  # nothing to signal any more
    finally:
        proc.kill()
        proc.wait()


def test_a_pid_with_another_start_time_is_never_signalled() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ref = ProcessRef.of(proc.pid)
        assert ref is not None
        impostor = ProcessRef(proc.pid, ref.start_ticks + 1)  # as if the PID had been reused
        assert not impostor.alive()
        assert not impostor.kill()
        assert proc.poll() is None  # still running: it was not touched
    finally:
        proc.kill()
        proc.wait()


def test_descendants_finds_children_of_a_process() -> None:
    proc = subprocess.Popen([sys.executable, "-c", PARENT], start_new_session=True)
    try:
        wait_for(lambda: descendants(proc.pid))
        [child] = descendants(proc.pid)
        assert child.alive()
        child.kill()
        wait_for(lambda: not child.alive())
    finally:
        proc.kill()
        proc.wait()
    assert ProcessRef.of(proc.pid) is None
