"""The termination log: the one Result a trainer pod leaves for the operator.

Kubernetes copies a container's /dev/termination-log into its status when it ends; the operator
reads the `Result` from there. Kept free of torch so the CLI can clear the file before the
training stack loads.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from .contract import Result

log = logging.getLogger(__name__)


def write_termination_message(result: Result, path: Path) -> Result:
    """Write the Result where the operator reads it, unless a Result of this launch is already there;
    returns the Result that stands in the file (`result` itself when the file cannot be read back).

    The ranks of one pod share the file, and the first Result written is the cause: when one
    rank fails (out of memory, a stalled step, a lost peer), torchrun stops the others with
    SIGTERM and their own failures (Preempted, a broken collective) are consequences that must
    not replace it. A success is written by rank 0 alone, so it never follows a failure.
    `clear_termination_message` empties the file when the launch starts. Reading, checking and
    writing happen under one exclusive lock, so two ranks failing at once leave one whole Result.
    The file is rewritten in place, not renamed: /dev/termination-log is a mounted file.

    A process must exit with the code of the Result that stands, not of its own: the operator
    takes a Succeeded Result with a non-zero exit code for a crash, and a run finishing just as
    a deadline (SIGTERM's budget, the step watchdog) fires has two Results in flight.
    """
    data = result.to_termination_message().encode("utf-8")
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            if os.fstat(descriptor).st_size > 0:
                log.info("kept the Result another rank wrote first to %s", path)
                return _standing(descriptor) or result
            os.write(descriptor, data)
        finally:
            os.close(descriptor)  # releases the lock
    except OSError as exc:
        log.warning("could not write the termination message to %s: %s", path, exc)
    return result


def _standing(descriptor: int) -> Result | None:
    """The Result already in the (locked) file, or None when it does not parse."""
    os.lseek(descriptor, 0, os.SEEK_SET)
    chunks: list[bytes] = []
    while chunk := os.read(descriptor, 65536):
        chunks.append(chunk)
    try:
        return Result.from_termination_message(b"".join(chunks).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


def read_termination_message(path: Path) -> Result | None:
    """The Result standing in the termination log; None when there is none (or it does not parse)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH)
        return _standing(descriptor)
    finally:
        os.close(descriptor)


def clear_termination_message(path: Path) -> None:
    """Empty the termination log when a launch starts, so a Result of an earlier run never stands.

    Called once per pod (local rank 0) before anything that could fail; a pod's own
    /dev/termination-log starts empty anyway, a local run's file may not.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("could not clear the termination message at %s: %s", path, exc)
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        os.ftruncate(descriptor, 0)
    finally:
        os.close(descriptor)
