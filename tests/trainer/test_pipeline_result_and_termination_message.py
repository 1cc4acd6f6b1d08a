"""`run_pipeline` runs the stages in order, stops at the first failure, and always leaves a Result.

The stages here are plain functions standing in for the real ones (whose own behaviour the
`test_run_local_*` tests cover end to end): what is under test is the pipeline's bookkeeping,
the error classification, and the termination message the operator reads.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch

from kubetune_trainer.context import DistInfo, RunContext
from kubetune_trainer.contract import (
    TERMINATION_MESSAGE_LIMIT,
    ErrorClass,
    Outcome,
    OutputSummary,
    Result,
    Stage,
    StageState,
)
from kubetune_trainer.errors import InvalidInput
from kubetune_trainer.pipeline import STAGES, Stages, run_pipeline
from kubetune_trainer.report import RecordingReporter

from .local_runs import trainer_config
from .stand_in_stages import stand_in_stages


class Ticking:
    """A clock advancing one second per reading."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def _stages(failing: Stage | None, error: Exception | None = None) -> Stages:
    def each(ctx: RunContext, stage: Stage) -> None:
        ctx.warn("SeenBy" + stage.value, f"{stage.value} ran")
        if stage is failing:
            assert error is not None
            raise error
        if stage is Stage.UPLOAD:
            ctx.journal.output = OutputSummary(uri="pvc://models/chat", name="tiny-llama-chat", files=7, bytes=1000)

    return stand_in_stages(each)


def test_the_stages_are_the_five_in_order() -> None:
    names = ["download", "initialize", "train", "save", "upload"]
    assert [field.name for field in dataclasses.fields(Stages)] == names
    assert [getattr(STAGES, name).__module__.rsplit(".", 1)[-1] for name in names] == names


def test_a_successful_run_reports_each_transition_and_writes_a_parsable_result(tmp_path: Path) -> None:
    reporter = RecordingReporter()

    result = run_pipeline(
        trainer_config(tmp_path), environ={}, clock=Ticking(), reporter=reporter, stages=_stages(None)
    )

    assert [(stage, records[-1].state) for stage, records in reporter.transitions] == [
        (stage, state) for stage in Stage for state in (StageState.RUNNING, StageState.SUCCEEDED)
    ]
    final = reporter.transitions[-1][1]
    assert [record.name for record in final] == list(Stage)
    assert all(r.end_time and r.start_time and r.end_time > r.start_time for r in final)
    written = Result.from_termination_message((tmp_path / "termination-log").read_text())
    assert written == result == reporter.results[0]
    assert (written.outcome, written.exit_code, written.error) == (Outcome.SUCCEEDED, 0, None)
    assert written.output is not None
    assert written.output.files == 7
    assert [w.reason for w in written.warnings] == [f"SeenBy{stage.value}" for stage in Stage]


@pytest.mark.parametrize(
    ("failing", "error", "expected"),
    [
        (
            Stage.DATA_DOWNLOAD,
            InvalidInput("spec.trainingFile: line 3: no assistant message", reason="InvalidTrainingData", hint="fix"),
            (ErrorClass.INVALID_INPUT, "InvalidTrainingData", 2),
        ),
        (
            Stage.TRAINING,
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
            (ErrorClass.CUDA_OOM, "OutOfMemory", 5),
        ),
        (Stage.INITIALIZATION, ValueError("hidden size mismatch"), (ErrorClass.VALUE_ERROR, "InvalidConfiguration", 3)),
        (Stage.SAVING, RuntimeError("storage broke"), (ErrorClass.RUNTIME_ERROR, "ComputationFailed", 4)),
        (Stage.UPLOAD, ConnectionResetError("reset by peer"), (ErrorClass.INTERNAL, "NetworkFailure", 1)),
    ],
)
def test_the_first_failure_stops_the_run_and_becomes_the_result(
    tmp_path: Path, failing: Stage, error: Exception, expected: tuple[ErrorClass, str, int]
) -> None:
    error_class, reason, exit_code = expected
    reporter = RecordingReporter()

    result = run_pipeline(
        trainer_config(tmp_path), environ={}, clock=Ticking(), reporter=reporter, stages=_stages(failing, error)
    )

    written = Result.from_termination_message((tmp_path / "termination-log").read_text())
    assert written == result
    assert written.outcome is Outcome.FAILED
    assert written.exit_code == exit_code
    assert written.error is not None
    assert (written.error.error_class, written.error.reason, written.error.stage) == (error_class, reason, failing)
    assert written.error.hint
    assert written.error.retryable is (error_class is ErrorClass.INTERNAL)
    final = reporter.transitions[-1][1]
    assert [r.name for r in final] == list(Stage)[: list(Stage).index(failing) + 1]
    assert final[-1].state is StageState.FAILED
    assert final[-1].message == written.error.message


def test_the_termination_message_fits_in_4_kib_however_many_warnings(tmp_path: Path) -> None:
    def noisy(ctx: RunContext) -> None:
        for index in range(200):
            ctx.warn(f"Noise{index}", "x" * 300)
        raise InvalidInput("y" * 5000, reason="Huge", hint="z" * 2000)

    run_pipeline(
        trainer_config(tmp_path),
        environ={},
        clock=Ticking(),
        reporter=RecordingReporter(),
        stages=stand_in_stages(download=noisy),
    )

    text = (tmp_path / "termination-log").read_text()
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    written = Result.from_termination_message(text)
    assert written.error is not None
    assert written.error.reason == "Huge"
    assert written.warnings_omitted > 0


def test_only_rank_0_writes_the_result_of_a_successful_run(tmp_path: Path) -> None:
    run_pipeline(
        trainer_config(tmp_path),
        environ={},
        clock=Ticking(),
        reporter=RecordingReporter(),
        dist=DistInfo(rank=1, world_size=2, local_rank=1),
        stages=_stages(None),
    )

    assert not (tmp_path / "termination-log").exists()
