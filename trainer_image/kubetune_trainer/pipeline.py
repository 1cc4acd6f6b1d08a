"""The trainer's stages, run top to bottom, and the `Result` a run ends with.

    DataDownload -> Initialization -> Training -> Saving -> Upload

Each stage is a function `run(ctx: RunContext) -> None` in `stages/`; `STAGES` lists them in
order and nothing else decides what runs. `run_pipeline` records each stage's start, end and
outcome, announces every transition to the reporter, turns the first failure into the error of
the `Result`, and writes that Result to the termination log, where the operator reads it even
when the trainer could not reach the Kubernetes API.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from . import saved_output
from .classify import classify, exit_code_for
from .context import Clock, DistInfo, RunContext, WorkPaths
from .contract import JobError, Outcome, Result, Stage, StageRecord, StageState, TrainerConfig, WarningNote
from .errors import TrainerError
from .preemption import Preemption, preempted
from .report import Reporter
from .stages import download, initialize, save, train, upload
from .storage import S3Settings
from .termination import write_termination_message
from .watchdog import StepWatchdog

log = logging.getLogger(__name__)

StageFn = Callable[[RunContext], None]

STAGES: tuple[tuple[Stage, StageFn], ...] = (
    (Stage.DATA_DOWNLOAD, download.run),
    (Stage.INITIALIZATION, initialize.run),
    (Stage.TRAINING, train.run),
    (Stage.SAVING, save.run),
    (Stage.UPLOAD, upload.run),
)


def run_pipeline(
    config: TrainerConfig,
    *,
    environ: Mapping[str, str],
    clock: Clock,
    reporter: Reporter,
    dist: DistInfo | None = None,
    stages: Sequence[tuple[Stage, StageFn]] = STAGES,
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
    records: list[StageRecord] = []
    if preemption is not None:
        preemption.on_deadline(lambda: _out_of_grace(ctx, stage=records[-1].name if records else None))
    error: JobError | None = None
    kept = _kept_model(ctx)
    if kept is not None:
        # An earlier attempt saved and verified this model, then failed to upload it: upload, never train again.
        ctx.saved_dir, ctx.output_name = kept, config.output.model_name
        log.warning("the model saved by an earlier attempt is complete (%s): resuming at Upload", kept)
        stages = [(stage, run) for stage, run in stages if stage == Stage.UPLOAD]
    for stage, run in stages:
        records.append(StageRecord(name=stage, state=StageState.RUNNING, start_time=clock()))
        reporter.stage_changed(stage, records)
        try:
            with preemption.stage() if preemption is not None else contextlib.nullcontext():
                run(ctx)
        except Exception as exc:
            error = classify(exc, stage=stage, job_uid=config.job.uid)
            # A domain error says all there is to say; anything else needs its traceback to be fixed.
            trace = None if isinstance(exc, TrainerError) else exc
            log.error("stage %s failed: %s: %s", stage.value, error.error_class.value, error.message, exc_info=trace)
            records[-1] = _ended(records[-1], StageState.FAILED, clock=clock, message=error.message)
            reporter.stage_changed(stage, records)
            break
        records[-1] = _ended(records[-1], StageState.SUCCEEDED, clock=clock, message=None)
        if stage == Stage.DATA_DOWNLOAD and ctx.training_tokens is not None:
            # The operator estimates the job's GPU-hours from this count (status.estimate).
            records[-1] = StageRecord.model_validate({**dict(records[-1]), "training_tokens": ctx.training_tokens})
        reporter.stage_changed(stage, records)

    result = _result(ctx, error)
    # Every rank of a pod shares one termination log: rank 0 writes the success, and any rank
    # that failed writes its failure (the first one written is kept: see write_termination_message).
    if ctx.dist.is_main or error is not None:
        write_termination_message(result, Path(config.termination_log_path))
    reporter.finished(result)
    return result


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
    """The run's Result as it stands: `error` (None for a success) and what the stages recorded in `ctx`."""
    return Result(
        outcome=Outcome.FAILED if error else Outcome.SUCCEEDED,
        exit_code=exit_code_for(error),
        error=error,
        warnings=list(ctx.warnings),
        model=ctx.model_facts,
        output=ctx.output,
        checkpoint_step=ctx.checkpoint_step,
        resumed_from_step=ctx.resumed_from_step,
        performance=ctx.performance,
        memory_plan=ctx.memory_plan,
    )


def _ended(record: StageRecord, state: StageState, *, clock: Clock, message: str | None) -> StageRecord:
    return record.model_copy(update={"state": state, "end_time": clock(), "message": _short(message)})


def _short(message: str | None, limit: int = 1024) -> str | None:
    if message is None or len(message) <= limit:
        return message
    return message[: limit - 1] + "…"
