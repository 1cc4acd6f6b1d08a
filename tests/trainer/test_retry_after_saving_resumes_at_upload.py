"""A retry whose model was already saved resumes at Upload and never trains again.

The first attempt trains, saves and verifies the model, then its upload fails (the destination
cannot be written, as a store refusing a write would). The model was kept beside the job's
checkpoints; the retry (same job, same uid) finds it complete, runs only Upload and succeeds,
reporting no training step. A kept copy whose files no longer hash to its marker is not trusted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from kubetune_trainer.context import DistInfo
from kubetune_trainer.contract import Outcome, Stage, TrainerConfig
from kubetune_trainer.pipeline import run_pipeline
from kubetune_trainer.report import RecordingReporter
from kubetune_trainer.saved_output import MARKER, find
from kubetune_trainer.storage import S3Settings
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.checkpoint_location import CheckpointPlace

from .preemption_runs import resumable_job


def _run(config: TrainerConfig, offline_env: dict[str, str]) -> tuple[Outcome, RecordingReporter, str | None]:
    reporter = RecordingReporter()
    result = run_pipeline(
        config, environ=offline_env, clock=lambda: datetime.now(UTC), reporter=reporter, dist=DistInfo()
    )
    return result.outcome, reporter, result.error.reason if result.error else None


def _with_output(config: TrainerConfig, uri: Path) -> TrainerConfig:
    return config.model_copy(update={"output": config.output.model_copy(update={"uri": str(uri)})})


def test_a_failed_upload_is_retried_without_training_again(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    job = resumable_job(tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "work", checkpoints=checkpoints)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the output's parent directory should be")
    first = _with_output(job, blocked / "model")

    outcome, reporter, reason = _run(first, offline_env)
    assert (outcome, reason) == (Outcome.FAILED, "UploadFailed")
    assert any(p.step for p in reporter.progresses), "the first attempt trained"
    kept = checkpoints / "tiny" / job.job.uid / "saved" / "model"
    assert (
        find(
            CheckpointPlace(local=kept.parent.parent), name=job.output.model_name, dist_info=DistInfo(), s3=S3Settings()
        )
        == kept
    )

    retry = _with_output(job, tmp_path / "models" / "model")
    outcome, reporter, reason = _run(retry, offline_env)
    assert (outcome, reason) == (Outcome.SUCCEEDED, None)
    assert [p.step for p in reporter.progresses if p.step] == [], "the retry trained again"
    assert [s.name for s in reporter.transitions[-1][1]] == [Stage.UPLOAD]
    assert (tmp_path / "models" / "model" / "README.md").is_file()
    assert not (tmp_path / "models" / "model" / MARKER).exists(), "the kept copy's marker reached the user's model"
    assert (tmp_path / "models" / "model" / "config.json").read_bytes() == (kept / "config.json").read_bytes()


def test_a_damaged_kept_model_is_not_trusted(tmp_path: Path) -> None:
    folder = tmp_path / "job" / "saved"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "model.safetensors").write_bytes(b"\0" * 16)
    (folder / MARKER).write_text(
        '{"modelName": "m", "sha256": {"model.safetensors": "' + "0" * 64 + '"}}', encoding="utf-8"
    )
    assert find(CheckpointPlace(local=tmp_path / "job"), name="m", dist_info=DistInfo(), s3=S3Settings()) is None
