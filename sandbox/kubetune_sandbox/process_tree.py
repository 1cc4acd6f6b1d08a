"""Every process a pod started, found by a mark in its environment, for a SIGKILL that misses none.

A container's processes all die with it in a cluster (the kernel kills its cgroup). On a host,
killing the pod's process group is not enough: torchrun starts each worker in a session of its
own, so a SIGKILL to the agent's group leaves the trainer workers running with init as parent.
Each pod's first process gets `KUBETUNE_SANDBOX_POD=<pod uid>` in its environment; children
inherit it, so the workers carry it too, orphaned or not, and /proc tells which processes do.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from pathlib import Path

POD_MARK_ENV = "KUBETUNE_SANDBOX_POD"
PROC = Path("/proc")


def marked(uid: str, *, proc: Path = PROC) -> list[int]:
    """Pids of the live processes whose environment carries the pod's mark (none where /proc is absent)."""
    needle = f"{POD_MARK_ENV}={uid}".encode()
    found = []
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit():
            continue
        # A process may end, or belong to someone else, between the listing and the read.
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
    return found


def kill_marked(uid: str, *, proc: Path = PROC) -> list[int]:
    """SIGKILL every process carrying the pod's mark; the pids signalled."""
    if not uid:  # an empty mark would match every pod's processes
        return []
    pids = [pid for pid in marked(uid, proc=proc) if pid != os.getpid()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids


_PR_SET_PDEATHSIG = 1


def terminate_when_parent_dies() -> None:
    """In a child before exec: SIGTERM when the sandbox dies without stopping it (SIGKILL, a crash).

    The operator and each pod run in sessions of their own, so no terminal or process-group signal
    reaches them; without this they would outlive a killed sandbox (the operator retrying a dead
    API forever, a torchrun agent training on). A pod's agent forwards the SIGTERM to its workers.
    """
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
