"""The step watchdog: a training run in which no optimizer step completes for too long fails as Stalled.

A hung collective (a peer that died without closing its socket, a wedged NCCL kernel), a dead
data mount or a deadlock leaves the main thread blocked forever: no exception, no Result, a
pod holding GPUs until someone looks. The watchdog is a `Reporter` fed by the loop's progress
reports, with a thread of its own that fires when

    seconds since the last completed step > max(STALL_FACTOR x median step time, floor)

The median adapts the limit to the job (a 70B step takes minutes, a tiny one milliseconds);
the floor (`runtime.stepWatchdogFloorSeconds`, default 900) keeps short steps from making the
limit so tight that a slow evaluation or checkpoint looks like a stall.

What counts: the clock starts when the Training stage starts, so downloads and model loading
never count. Until a step has completed there is no median: the time to the loop's first
report (optimizer set-up and the evaluation before training) and then the first step (which
includes warm-up: allocator growth, kernel selection, the first collectives) are each bounded
by the floor alone (a slow first step barely moves a median). Evaluations and checkpoint saves
(with their copy to an object store) run `paused`: they are not watched, and the clock restarts
when they end. When Training ends the watchdog disarms: Saving and Upload are not steps.

When it fires, the main thread may be stuck inside a collective and can do nothing, so the
watchdog thread itself writes the Result (Internal, reason Stalled, retryable) to the
termination log, reports it (Training failed, then the Result), flushes, and ends this process
with the Internal exit code (`os._exit`). It kills nothing else: under torchrun the agent sees
rank 0 exit and stops the other ranks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .classify import exit_code_for
from .context import Clock, WorkPaths
from .contract import JobError, Outcome, Progress, Result, Stage, StageRecord, StageState, TrainerConfig
from .errors import InfrastructureFailure
from .report import Reporter
from .termination import write_termination_message

log = logging.getLogger(__name__)

STALL_FACTOR = 10.0
"""A step this many times slower than the median is a stall, not a slow step."""

STALLED = "Stalled"


def stall_limit(step_seconds: Sequence[float], *, floor_seconds: float) -> float:
    """Seconds allowed without a completed step, given the durations of the steps so far."""
    if not step_seconds:
        return floor_seconds
    return max(STALL_FACTOR * statistics.median(step_seconds), floor_seconds)


def should_fire(step_seconds: Sequence[float], *, idle_seconds: float, floor_seconds: float) -> bool:
    """True when `idle_seconds` without a completed step exceed the limit for these step durations."""
    return idle_seconds > stall_limit(step_seconds, floor_seconds=floor_seconds)


def stalled_error(*, idle_seconds: float, limit_seconds: float, step: int) -> JobError:
    return InfrastructureFailure(
        f"no training step completed for {_seconds(idle_seconds)} (limit {_seconds(limit_seconds)}: "
        f"{STALL_FACTOR:.0f}x the median step time, at least runtime.stepWatchdogFloorSeconds) after step {step}: "
        "the run is stalled (a hung collective, a lost peer or a blocked data read)",
        reason=STALLED,
        hint="Retried automatically from the newest checkpoint. If it recurs at the same step, check the nodes' "
        "network and storage; a step that is legitimately this slow needs a larger stepWatchdogFloorSeconds.",
        retryable=True,
    ).to_job_error(Stage.TRAINING)


def _seconds(seconds: float) -> str:
    """Whole seconds, or tenths under 10 s: a floor of 0.5 s reads `0.5s`, not `0s`."""
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"


@dataclass
class _Steps:
    """What the watchdog knows of the Training stage running now (monotonic seconds)."""

    last_mark: float
    """When the last step completed, an evaluation ended, or Training started."""
    last_step: int | None = None
    """The step of the last progress report; None before the first one."""
    durations: list[float] = field(default_factory=list)


class StepWatchdog:
    """A `Reporter` that watches step completions and calls `on_stall` once, from its own thread.

    `on_stall` receives the Result to end the run with; in the trainer it is `end_process`,
    which does not return. `monotonic` and `poll_seconds` are injectable for tests;
    `checkpoint_step` gives the newest complete checkpoint, for the operator to resume from.
    """

    def __init__(
        self,
        *,
        floor_seconds: float,
        on_stall: Callable[[Result], None],
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
        poll_seconds: float | None = None,
        checkpoint_step: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.floor_seconds = floor_seconds
        self._on_stall = on_stall
        self._clock = clock
        self._monotonic = monotonic
        self._poll = poll_seconds if poll_seconds is not None else min(5.0, floor_seconds / 4)
        self._checkpoint_step = checkpoint_step
        self._lock = threading.Lock()
        self._steps: _Steps | None = None  # None: not in Training, nothing to watch
        self._paused = 0  # evaluations and checkpoint saves running now
        self._stages: list[StageRecord] = []
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    # Reporter -------------------------------------------------------------------------------

    def stage_changed(self, stage: Stage, stages: Sequence[StageRecord]) -> None:
        now = self._monotonic()
        with self._lock:
            self._stages = list(stages)
            if stage is Stage.TRAINING:
                running = stages[-1].state is StageState.RUNNING
                self._steps = _Steps(last_mark=now) if running else None

    def progress(self, progress: Progress) -> None:
        now = self._monotonic()
        with self._lock:
            steps = self._steps
            if steps is None:
                return
            if steps.last_step is not None and progress.step > steps.last_step:
                # Spread over the steps completed since the last report, so a report the loop
                # skipped does not pass for one slow step in the median.
                completed = progress.step - steps.last_step
                steps.durations.extend([(now - steps.last_mark) / completed] * completed)
            # The first report (step 0 after the evaluation before training, or the step a
            # resumed run starts at) and evaluation reports only restart the clock.
            steps.last_step = max(progress.step, steps.last_step or 0)
            steps.last_mark = now

    def note(self, message: str) -> None:
        pass

    def finished(self, result: Result) -> None:
        self.stop()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Inside, no stall is found; when it ends the clock restarts.

        The loop runs its evaluations and checkpoint saves (with the copy to an object store)
        in here: they are not steps, and a large model's save can outlast any floor. Firing
        there would fail every retry at the same checkpoint.
        """
        with self._lock:
            self._paused += 1
        try:
            yield
        finally:
            now = self._monotonic()
            with self._lock:
                self._paused -= 1
                if self._steps is not None:
                    self._steps.last_mark = now

    # The thread -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="kubetune-step-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def check(self) -> Result | None:
        """The Result to end the run with if it is stalled now; None while steps come in time."""
        now = self._monotonic()
        with self._lock:
            steps = self._steps
            if steps is None or self._paused:
                return None
            idle = now - steps.last_mark
            limit = stall_limit(steps.durations, floor_seconds=self.floor_seconds)
            if idle <= limit:
                return None
            error = stalled_error(idle_seconds=idle, limit_seconds=limit, step=steps.last_step or 0)
        return Result(
            outcome=Outcome.FAILED, exit_code=exit_code_for(error), error=error, checkpoint_step=self._checkpoint_step()
        )

    def failed_stages(self, result: Result) -> list[StageRecord]:
        """The stage records as the pipeline would end them: Training failed with the stall's message."""
        with self._lock:
            records = list(self._stages)
        if records and records[-1].state is StageState.RUNNING and result.error is not None:
            records[-1] = records[-1].model_copy(
                update={"state": StageState.FAILED, "end_time": self._clock(), "message": result.error.message}
            )
        return records

    def _watch(self) -> None:
        while not self._stopped.wait(self._poll):
            result = self.check()
            if result is not None:
                log.error("%s", result.error.message if result.error else STALLED)
                self._stopped.set()
                self._on_stall(result)
                return


def end_process(
    result: Result,
    *,
    watchdog: StepWatchdog,
    reporter: Reporter,
    termination_log: Path,
    exit_process: Callable[[int], object] = os._exit,
) -> None:
    """End the run from the watchdog thread: the Result to the termination log, then the reporters, then exit.

    The termination message comes first: it is what the operator reads even if reporting hangs
    on the same broken network. `reporter` must not include the watchdog itself. When another
    Result stands already (the run ended as the watchdog fired), the process exits with its code.
    """
    standing = write_termination_message(result, termination_log)
    if standing is not result:
        log.warning("the run wrote its own Result as the watchdog fired: that one stands")
    else:
        try:
            records = watchdog.failed_stages(result)
            if records:
                reporter.stage_changed(records[-1].name, records)
            reporter.finished(result)
        except Exception:  # reporting is an observer: the termination message already holds the Result
            log.exception("could not report the stalled run")
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    exit_process(standing.exit_code)


def start_step_watchdog(config: TrainerConfig, *, reporter: Reporter, clock: Clock) -> StepWatchdog:
    """Rank 0's watchdog for `config`, running; it reports a stall through `reporter` and ends the process."""

    def on_stall(result: Result) -> None:
        end_process(result, watchdog=watchdog, reporter=reporter, termination_log=Path(config.termination_log_path))

    watchdog = StepWatchdog(
        floor_seconds=config.runtime.step_watchdog_floor_seconds,
        on_stall=on_stall,
        clock=clock,
        checkpoint_step=lambda: newest_complete_checkpoint(config),
    )
    watchdog.start()
    return watchdog


def newest_complete_checkpoint(config: TrainerConfig) -> int | None:
    """The newest step of this job's checkpoints with a COMPLETE marker: the step the retry resumes from.

    Read from the checkpoint directory rather than asked of the main thread, which is the one stalled.
    Under an `s3://` location it is None: a local checkpoint may not have reached the store (the
    stall may be its copy), and a retry told `<job>:<step>` for a step the store lacks is refused
    as InvalidInput, for good; with no step the retry takes the newest checkpoint in the store.
    """
    # Imported when a stall fires: resume.py needs torch, which the CLI leaves unloaded until training.
    from .training.checkpoint_location import job_checkpoints  # noqa: PLC0415
    from .training.resume import marked_checkpoints  # noqa: PLC0415

    place = job_checkpoints(
        config.runtime.checkpoint_uri,
        job=config.job.name,
        own_job=config.job.name,
        work_checkpoints=WorkPaths(Path(config.runtime.work_dir)).checkpoints,
        pvc_mount_root=config.data.pvc_mount_root,
        root=config.runtime.checkpoint_root,
        uid=config.job.uid,
    )
    if place.remote is not None:
        return None
    return max(marked_checkpoints(place.local), default=None)
