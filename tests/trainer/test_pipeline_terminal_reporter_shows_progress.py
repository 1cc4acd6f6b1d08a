"""The terminal reporter of local runs: stage lines, a progress bar, and the outcome in words."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from kubetune_trainer.contract import (
    ErrorClass,
    JobError,
    Outcome,
    Progress,
    Result,
    Stage,
    StageRecord,
    StageState,
    WarningNote,
)
from kubetune_trainer.report import TerminalReporter

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_into_a_file_the_bar_is_written_every_interval_and_at_the_last_step() -> None:
    stream, ticks = io.StringIO(), Ticks()
    reporter = TerminalReporter(stream, interactive=False, min_interval_seconds=5.0, monotonic=ticks)

    reporter.stage_changed(Stage.TRAINING, [StageRecord(name=Stage.TRAINING, state=StageState.RUNNING, start_time=T0)])
    reporter.progress(Progress(step=0, total_steps=10, eval_loss=3.25))
    for step in range(1, 11):
        ticks.now = float(step)
        reporter.progress(
            Progress(
                step=step,
                total_steps=10,
                loss=3.0 - step / 10,
                learning_rate=2e-4,
                tokens_per_second=1234.5,
                eta_seconds=(10 - step) * 65,
            )
        )
    done = StageRecord(
        name=Stage.TRAINING, state=StageState.SUCCEEDED, start_time=T0, end_time=T0 + timedelta(seconds=12)
    )
    reporter.stage_changed(Stage.TRAINING, [done])

    lines = stream.getvalue().splitlines()
    assert lines[0] == "==> Training"
    bars = [line for line in lines if line.startswith("[")]
    assert [bar.split()[1] for bar in bars] == ["0/10", "5/10", "10/10"]
    assert bars[1] == (
        "[############------------]     5/10   50%  loss 2.5000  eval 3.2500  lr 2.00e-04  1,234 tok/s  ETA 0:05:25"
    )
    assert bars[2].startswith("[########################]")
    assert lines[-1] == "    Training succeeded in 12.0s"


def test_on_a_terminal_the_bar_redraws_in_place() -> None:
    stream = io.StringIO()
    reporter = TerminalReporter(stream, interactive=True)

    reporter.progress(Progress(step=1, total_steps=2, loss=1.0))
    reporter.progress(Progress(step=2, total_steps=2, loss=0.5))
    reporter.note("saved tiny-chat")

    text = stream.getvalue()
    assert text.count("\r\x1b[2K[") == 2
    assert text.endswith("\n    saved tiny-chat\n")


def test_a_failure_is_told_with_class_reason_message_and_hint() -> None:
    stream = io.StringIO()
    error = JobError(
        error_class=ErrorClass.INVALID_INPUT,
        reason="RemoteCodeRefused",
        message="acme/odd declares auto_map (custom code)",
        hint="Pick a model whose architecture ships with transformers.",
        stage=Stage.DATA_DOWNLOAD,
    )
    result = Result(
        outcome=Outcome.FAILED,
        exit_code=2,
        error=error,
        warnings=[WarningNote(reason="TemplateSizeMismatch", message="smaller than the template")],
    )

    TerminalReporter(stream, interactive=False).finished(result)

    assert stream.getvalue().splitlines() == [
        "Failed in DataDownload: InvalidInput (RemoteCodeRefused)",
        "  acme/odd declares auto_map (custom code)",
        "  hint: Pick a model whose architecture ships with transformers.",
        "warning TemplateSizeMismatch: smaller than the template",
    ]
