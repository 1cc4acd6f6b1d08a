"""The loader never takes a partial checkpoint, and a named step that is not complete is refused.

- `resumeFrom: tiny` with only half-written directories (a hidden staging directory, a `step-N`
  without its COMPLETE marker) starts at step 0: nothing partial is loaded.
- `resumeFrom: tiny:7` when step 7 is not complete fails before training: InvalidInput, the
  message and hint naming `fromCheckpoint`.
- Every progress report's heartbeat is the time of the last completed step, evaluation reports
  included.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from kubetune_trainer.context import DistInfo
from kubetune_trainer.contract import ErrorClass, Outcome, Result, Stage, TrainerConfig
from kubetune_trainer.pipeline import run_pipeline
from kubetune_trainer.report import RecordingReporter
from kubetune_trainer.tiny_model import TinyModel

from .preemption_runs import resumable_job


def _half_written(checkpoints: Path) -> None:
    job = checkpoints / "tiny" / "uid-1234"  # the job's own directory is its uid's
    (job / ".step-00000012.partial").mkdir(parents=True)
    (job / ".step-00000012.partial" / "model.safetensors").write_bytes(b"\0" * 64)
    (job / "step-00000007").mkdir()
    (job / "step-00000007" / "model.safetensors").write_bytes(b"\0" * 64)
    (job / "step-00000007" / "state.json").write_text("{}")


def _run(config: TrainerConfig, offline_env: dict[str, str]) -> tuple[RecordingReporter, Result]:
    ticks = iter(range(10_000))
    reporter = RecordingReporter()
    result = run_pipeline(
        config,
        environ=offline_env,
        # Every reading of the clock is a new second, so a heartbeat taken late would show.
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=next(ticks)),
        reporter=reporter,
        dist=DistInfo(),
    )
    return reporter, result


def test_partial_checkpoints_are_never_loaded(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    _half_written(checkpoints)
    config = resumable_job(
        tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "work", checkpoints=checkpoints, resume_from="tiny"
    )

    reporter, result = _run(config, offline_env)

    assert result.outcome is Outcome.SUCCEEDED
    assert result.resumed_from_step is None
    steps = [p for p in reporter.progresses if p.loss is not None and p.eval_loss is None]
    assert [p.step for p in steps] == list(range(1, 17))
    # Heartbeats: the evaluation after step 8 carries step 8's time, not the (later) time it ended.
    heartbeat_of = {p.step: p.heartbeat_time for p in steps}
    evaluations = [p for p in reporter.progresses if p.eval_loss is not None and p.step > 0]
    # (a step's report is repeated, evaluation included, to carry the checkpoint it just completed)
    assert list(dict.fromkeys(p.step for p in evaluations)) == [8, 16]
    assert all(p.heartbeat_time == heartbeat_of[p.step] for p in evaluations)


def test_a_named_step_that_is_not_complete_is_refused(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    _half_written(checkpoints)
    config = resumable_job(
        tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "work", checkpoints=checkpoints, resume_from="tiny:7"
    )

    reporter, result = _run(config, offline_env)

    error = result.error
    assert error is not None
    assert error.error_class is ErrorClass.INVALID_INPUT
    assert error.stage is Stage.TRAINING
    assert error.reason == "CheckpointNotFound"
    assert "fromCheckpoint tiny:7" in error.message
    assert "step 7" in error.message
    assert error.hint is not None
    assert "complete checkpoint" in error.hint
    assert error.retryable is False
    assert not [p for p in reporter.progresses if p.loss is not None]  # no step trained
