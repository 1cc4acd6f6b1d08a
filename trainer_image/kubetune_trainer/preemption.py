"""SIGTERM: Kubernetes' notice of eviction, preemption or deletion, and the budget it leaves.

The handler only records the signal, with two exceptions:

- in a stage, outside the training loop, there is no step to finish and nothing worth saving,
  so the handler raises `Preempted` at once and the running stage fails (Internal, retryable);
  between stages and after the last one it only records it (the next stage fails at its start);
- inside the loop it returns: the loop sees the flag at the next step boundary (every rank
  agrees through the step's loss all-reduce), writes a checkpoint if the budget still allows
  one, and then fails the same way, with the checkpoint step in the Result.

Either way the signal starts the deadline (a thread waiting since `install`). If the run has not
ended when the budget is spent (a long step, a slow save), that thread writes the Result itself
(Internal, Preempted, the newest complete checkpoint) and ends the process, before Kubernetes'
SIGKILL would end it with no word at all. The handler itself only records the time and writes a
byte to the thread's pipe: it takes no lock the interrupted main thread might hold.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

from .errors import InfrastructureFailure

log = logging.getLogger(__name__)

PREEMPTED = "Preempted"
"""The reason code of every preemption failure; the operator retries it from the checkpoint."""


def preempted(message: str) -> InfrastructureFailure:
    return InfrastructureFailure(
        f"the trainer was terminated (SIGTERM: the pod was evicted, preempted or deleted); {message}",
        reason=PREEMPTED,
        hint="Retried automatically from the newest complete checkpoint (spec.checkpoint.uri); "
        "without a checkpoint location the retry starts over.",
        retryable=True,
    )


class Preemption:
    """The SIGTERM notice of one run, and the seconds left to act on it."""

    def __init__(self, *, budget_seconds: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.budget_seconds = budget_seconds
        self._monotonic = monotonic
        self._received_at: float | None = None
        self._deferring = False
        self._in_stage = False
        self._on_deadline: Callable[[], int] | None = None
        self._disarmed = False
        self._wake: int | None = None  # the write end of the pipe the deadline's thread waits on

    @property
    def requested(self) -> bool:
        return self._received_at is not None

    def remaining_seconds(self) -> float:
        """Seconds of the budget left (the whole budget before any signal)."""
        if self._received_at is None:
            return self.budget_seconds
        return self.budget_seconds - (self._monotonic() - self._received_at)

    def install(self) -> Callable[[], None]:
        """Handle SIGTERM in this process (main thread only); returns what restores the previous handler."""
        # The deadline's thread starts now and the handler wakes it through a pipe: a handler that
        # started a thread, logged or set an Event could deadlock on a lock the interrupted main
        # thread holds (inside Thread.start(), a log call, the same Event).
        waiting, self._wake = os.pipe()
        threading.Thread(
            target=self._await_deadline, args=(waiting,), name="kubetune-sigterm-deadline", daemon=True
        ).start()
        previous = signal.signal(signal.SIGTERM, self.handle)

        def restore() -> None:
            signal.signal(signal.SIGTERM, previous)  # first: no handler runs while disarming
            self.disarm()
            if self._wake is not None:
                os.close(self._wake)
                self._wake = None

        return restore

    def on_deadline(self, action: Callable[[], int]) -> None:
        """`action` writes the run's Result and returns its exit code, when the budget runs out."""
        self._on_deadline = action

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler: records the time and wakes the deadline's thread; takes no lock."""
        if self._received_at is None:
            self._received_at = self._monotonic()
            if self._wake is not None:
                os.write(self._wake, b"s")
        if self._in_stage and not self._deferring:
            raise preempted("no training step was running, so nothing was saved")

    @contextlib.contextmanager
    def stage(self) -> Iterator[None]:
        """Inside: a SIGTERM fails the running stage at once (outside `deferred`).

        Outside every stage (between two, or once the run has written its Result) the signal is
        only recorded: raised there it would escape the pipeline, and a run that had succeeded
        would die with a traceback. A stage that starts after a recorded signal fails at once.
        """
        if self.requested:
            raise preempted("the run was between stages, so nothing was saved")
        self._in_stage = True
        try:
            yield
        finally:
            self._in_stage = False

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Inside: a SIGTERM is only recorded, for the training loop to act on at a step boundary."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False

    def disarm(self) -> None:
        """The run ended with its own Result: the deadline has nothing left to do."""
        self._on_deadline = None
        self._disarmed = True
        if self._wake is not None:
            os.write(self._wake, b"d")  # lets the deadline's thread end

    def _await_deadline(self, waiting: int) -> None:
        try:
            os.read(waiting, 1)  # a signal or the disarming
            if self._disarmed:
                return
            log.warning("SIGTERM received: %.0f s to checkpoint and end", self.budget_seconds)
            select.select([waiting], [], [], max(0.0, self.remaining_seconds()))
        finally:
            os.close(waiting)
        action = self._on_deadline
        if self._disarmed or action is None:
            return
        log.error("the SIGTERM budget of %.0f s ran out before a step boundary: ending now", self.budget_seconds)
        code = action()
        logging.shutdown()
        # From this thread nothing else ends the process: the main thread may sit in a step.
        os._exit(code)
