"""The host processes a sandbox's pods left, found the way `ps` would: by their command lines.

A pod's processes are every process whose command line names a path under its pod directory
(the trainer's `--config` is there), whatever session or process group they are in: torchrun
starts its workers in sessions of their own, so the pod's process group alone does not hold them.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def processes_under(directory: Path) -> list[int]:
    """Pids of the live processes whose command line names `directory` or a path below it."""
    marker = str(directory).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if marker in cmdline and state != "Z":
                found.append(int(entry.name))
    return found


def kill_all(pids: list[int]) -> None:
    """SIGKILL what a failed check found, so one failure does not leave load behind for the next tests."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
