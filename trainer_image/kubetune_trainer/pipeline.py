"""The trainer's stages, run top to bottom, and the `Result` a run ends with.

    DataDownload -> Initialization -> Training -> Saving -> Upload

Each stage is a function `run(ctx, <the hand-offs it needs>) -> <its own hand-off>` in `stages/`
(the hand-offs are in `handoffs.py`); `Stages` names them and `_run_stages` threads their values
in order, so mypy proves no stage reads what an earlier one has not produced, and nothing else
decides what runs. `run_pipeline` records each stage's start, end and outcome, announces every
transition to the reporter, turns the first failure into the error of the `Result`, and writes
that Result to the termination log, where the operator reads it even when the trainer could not
reach the Kubernetes API.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from . import saved_output
from .classify import classify, exit_code_for
from .context import Clock, DistInfo, RunContext, WorkPaths
from .contract import (
    JobError,
    Outcome,
    OutputSummary,
    Result,
    Stage,
    StageRecord,
    StageState,
    TrainerConfig,
    WarningNote,
)
from .errors import TrainerError
from .handoffs import DownloadResult, InitializedRun, SavedModel, TrainingOutcome
from .preemption import Preemption, preempted
from .report import Reporter
from .stages import download, initialize, save, train, upload
from .storage import S3Settings
from .termination import write_termination_message
from .watchdog import StepWatchdog

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Stages:
    """The five stages, each typed by what it takes and what it hands on (tests swap one for a stand-in)."""

    download: Callable[[RunContext], DownloadResult]
    initialize: Callable[[RunContext, DownloadResult], InitializedRun]
    train: Callable[[RunContext, DownloadResult, InitializedRun], TrainingOutcome]
    save: Callable[[RunContext, DownloadResult, InitializedRun, TrainingOutcome], SavedModel | None]
    """None on the ranks other than 0: they take part in gathering the weights, rank 0 writes."""
    upload: Callable[[RunContext, SavedModel | None], OutputSummary | None]
    """None on the ranks other than 0: they have nothing to upload."""


STAGES = Stages(
    download=download.run,
    initialize=initialize.run,
    train=train.run,
    save=save.run,
    upload=upload.run,
)


class _StageFailed(Exception):
    """A stage failed and its error is recorded: no later stage runs."""


def run_pipeline(
    config: TrainerConfig,
    *,
    environ: Mapping[str, str],
    clock: Clock,
    reporter: Reporter,
    dist: DistInfo | None = None,
    stages: Stages = STAGES,
    preemption: Preemption | None = None,
    step_watchdog: StepWatchdog | None = None,
    warnings: Sequence[WarningNote] = (),
) -> Result:
    """Run every stage in order; stop at the first failure; return (and write) the Result.

    `warnings` are what the run found before it started (a sink asked for that is off); they end in the Result.
    """
    ctx = RunContext(
        config=config,
        environ=environ,
        clock=clock,
        reporter=reporter,
        dist=dist or DistInfo.from_env(environ),
        paths=WorkPaths(Path(config.runtime.work_dir)),
        preemption=preemption,
        step_watchdog=step_watchdog,
    )
    for note in warnings:
        ctx.warn(note.reason, note.message)
    step = _StageRunner(ctx)
    if preemption is not None:
        preemption.on_deadline(lambda: _out_of_grace(ctx, stage=step.current))
    with contextlib.suppress(_StageFailed):
        _run_stages(ctx, stages, step=step)

    result = _result(ctx, step.error)
    # Every rank of a pod shares one termination log: rank 0 writes the success, and any rank
    # that failed writes its failure (the first one written is kept: see write_termination_message).
    if ctx.dist.is_main or step.error is not None:
        write_termination_message(result, Path(config.termination_log_path))
    reporter.finished(result)
    return result


def _run_stages(ctx: RunContext, stages: Stages, *, step: _StageRunner) -> None:
    """Each stage gets the hand-offs of the stages before it; a failure raises _StageFailed and ends the run."""
    kept = _kept_model(ctx)
    if kept is not None:
        # An earlier attempt saved and verified this model, then failed to upload it: upload, never train again.
        log.warning("the model saved by an earlier attempt is complete (%s): resuming at Upload", kept)
        saved: SavedModel | None = SavedModel(folder=kept, name=ctx.config.output.model_name)
    else:
        # The operator estimates the job's GPU-hours from DataDownload's token count (status.estimate).
        downloaded = step(
            Stage.DATA_DOWNLOAD, lambda: stages.download(ctx), training_tokens=lambda done: done.training_tokens
        )
        initialized = step(Stage.INITIALIZATION, lambda: stages.initialize(ctx, downloaded))
        trained = step(Stage.TRAINING, lambda: stages.train(ctx, downloaded, initialized))
        saved = step(Stage.SAVING, lambda: stages.save(ctx, downloaded, initialized, trained))
    step(Stage.UPLOAD, lambda: stages.upload(ctx, saved))


class _StageRunner:
    """Runs one stage at a time: records and announces each, and turns the first failure into the run's error."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self.records: list[StageRecord] = []
        self.error: JobError | None = None

    @property
    def current(self) -> Stage | None:
        """The stage running (or the last one run); None before the first."""
        return self.records[-1].name if self.records else None

    def __call__(
        self, stage: Stage, run: Callable[[], T], *, training_tokens: Callable[[T], int | None] | None = None
    ) -> T:
        """`run()`'s hand-off; raises _StageFailed (the error recorded) when it fails.

        `training_tokens` reads the count the stage's record carries from its hand-off (DataDownload's).
        """
        ctx = self._ctx
        self.records.append(StageRecord(name=stage, state=StageState.RUNNING, start_time=ctx.clock()))
        ctx.reporter.stage_changed(stage, self.records)
        try:
            with ctx.preemption.stage() if ctx.preemption is not None else contextlib.nullcontext():
                handed_on = run()
        except Exception as exc:
            error = classify(exc, stage=stage, job_uid=ctx.config.job.uid)
            # A domain error says all there is to say; anything else needs its traceback to be fixed.
            trace = None if isinstance(exc, TrainerError) else exc
            log.error("stage %s failed: %s: %s", stage.value, error.error_class.value, error.message, exc_info=trace)
            self.error = error
            self._end(StageState.FAILED, message=error.message)
            raise _StageFailed from exc
        tokens = training_tokens(handed_on) if training_tokens is not None else None
        self._end(StageState.SUCCEEDED, message=None, training_tokens=tokens)
        return handed_on

    def _end(self, state: StageState, *, message: str | None, training_tokens: int | None = None) -> None:
        record = _ended(self.records[-1], state, clock=self._ctx.clock, message=message)
        if training_tokens is not None:
            record = StageRecord.model_validate({**dict(record), "training_tokens": training_tokens})
        self.records[-1] = record
        self._ctx.reporter.stage_changed(record.name, self.records)


def _kept_model(ctx: RunContext) -> Path | None:
    place = train.kept_model_place(ctx)
    if place is None:
        return None
    return saved_output.find(
        place, name=ctx.config.output.model_name, dist_info=ctx.dist, s3=S3Settings.from_env(ctx.environ)
    )


def _out_of_grace(ctx: RunContext, *, stage: Stage | None) -> int:
    """The Result when SIGTERM's budget ran out mid-stage: Preempted, with the newest complete checkpoint."""
    error = classify(
        preempted("the grace budget ran out before a checkpoint could be written"),
        stage=stage,
        job_uid=ctx.config.job.uid,
    )
    # The run may have written its own Result a moment ago: exit with the code of the one that stands.
    return write_termination_message(_result(ctx, error), Path(ctx.config.termination_log_path)).exit_code


def _result(ctx: RunContext, error: JobError | None) -> Result:
    """The run's Result as it stands: `error` (None for a success) and what the stages recorded in the journal."""
    journal = ctx.journal
    return Result(
        outcome=Outcome.FAILED if error else Outcome.SUCCEEDED,
        exit_code=exit_code_for(error),
        error=error,
        warnings=list(journal.warnings),
        model=journal.model,
        output=journal.output,
        checkpoint_step=journal.checkpoint_step,
        resumed_from_step=journal.resumed_from_step,
        performance=journal.performance,
        memory_plan=journal.memory_plan,
    )


def _ended(record: StageRecord, state: StageState, *, clock: Clock, message: str | None) -> StageRecord:
    return record.model_copy(update={"state": state, "end_time": clock(), "message": _short(message)})


def _short(message: str | None, limit: int = 1024) -> str | None:
    if message is None or len(message) <= limit:
        return message
    return message[: limit - 1] + "…"
