"""Under an `s3://` checkpoint location, a retry whose model was already saved resumes at Upload.

The first attempt trains, saves and verifies the model, then its upload fails (the destination
cannot be written). The model was kept under the job's checkpoints in the store
(`<location>/<job>/<uid>/saved/`, its manifest written last); the retry runs on a fresh machine
(an empty work directory), fetches the copy, checks every file against the manifest, runs only
Upload and delivers exactly the files the first attempt saved, without a training step.

A copy without its manifest (a keep cut short) or whose files no longer hash to it is ignored:
the attempt trains. Runs against a moto S3 server on loopback.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kubetune_trainer.context import DistInfo
from kubetune_trainer.contract import Outcome, Stage, TrainerConfig
from kubetune_trainer.pipeline import run_pipeline
from kubetune_trainer.report import RecordingReporter
from kubetune_trainer.saved_output import MARKER, find, keep
from kubetune_trainer.storage import MANIFEST_NAME, S3Settings
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.checkpoint_location import CheckpointPlace

from .preemption_runs import resumable_job
from .s3_checkpoints import on_s3


def _location(tmp_path: Path) -> str:
    """A root of this test's own: moto's server keeps every bucket's objects for the whole process."""
    return f"s3://checkpoints/{tmp_path.name}"


def _saved_prefix(tmp_path: Path) -> str:
    return f"{tmp_path.name}/tiny/uid-1234/saved/"


def _attempt(
    model: TinyModel, *, hf_home: Path, work_dir: Path, output: Path, environ: dict[str, str], location: str
) -> tuple[Outcome, str | None, RecordingReporter]:
    config = on_s3(resumable_job(model, hf_home=hf_home, work_dir=work_dir, checkpoints=work_dir), location)
    config = config.model_copy(update={"output": config.output.model_copy(update={"uri": str(output)})})
    reporter = RecordingReporter()
    result = run_pipeline(config, environ=environ, clock=lambda: datetime.now(UTC), reporter=reporter, dist=DistInfo())
    return result.outcome, result.error.reason if result.error else None, reporter


def _retry_on_a_fresh_machine(
    model: TinyModel, *, hf_home: Path, tmp_path: Path, environ: dict[str, str], output: Path
) -> tuple[Outcome, str | None, RecordingReporter]:
    """The second attempt: an empty work directory, the same checkpoint location, delivering to `output`."""
    return _attempt(
        model,
        hf_home=hf_home,
        work_dir=tmp_path / "retry",
        output=output,
        environ=environ,
        location=_location(tmp_path),
    )


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _saved_by_first_attempt(
    model: TinyModel, *, hf_home: Path, tmp_path: Path, environ: dict[str, str]
) -> tuple[TrainerConfig, dict[str, bytes]]:
    """The first attempt: trains, saves, keeps the model in the store, then fails to upload it."""
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the output's parent directory should be")
    work = tmp_path / "first"
    outcome, reason, reporter = _attempt(
        model, hf_home=hf_home, work_dir=work, output=blocked / "m", environ=environ, location=_location(tmp_path)
    )
    assert (outcome, reason) == (Outcome.FAILED, "UploadFailed")
    assert any(p.step for p in reporter.progresses), "the first attempt trained"
    config = resumable_job(model, hf_home=hf_home, work_dir=work, checkpoints=work)
    return config, _files(work / "output" / config.output.model_name)


def test_a_retry_on_a_fresh_machine_uploads_the_kept_model_without_training(
    s3_bucket: tuple[dict[str, str], Any, str],
    tiny_llama: TinyModel,
    tiny_hf_home: Path,
    offline_env: dict[str, str],
    tmp_path: Path,
) -> None:
    aws, client, bucket = s3_bucket
    environ = {**offline_env, **aws}
    _, saved = _saved_by_first_attempt(tiny_llama, hf_home=tiny_hf_home, tmp_path=tmp_path, environ=environ)
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=_saved_prefix(tmp_path))["Contents"]}
    assert {k.removeprefix(_saved_prefix(tmp_path)) for k in keys} == {
        *(f"model/{f}" for f in saved),
        MARKER,
        MANIFEST_NAME,
    }

    delivered = tmp_path / "models" / "model"
    outcome, reason, reporter = _retry_on_a_fresh_machine(
        tiny_llama, hf_home=tiny_hf_home, tmp_path=tmp_path, environ=environ, output=delivered
    )

    assert (outcome, reason) == (Outcome.SUCCEEDED, None)
    assert [p.step for p in reporter.progresses if p.step] == [], "the retry trained again"
    assert [s.name for s in reporter.transitions[-1][1]] == [Stage.UPLOAD]
    delivered_files = _files(delivered)
    delivered_files.pop(MANIFEST_NAME)  # what every destination holds beside the model (storage)
    assert delivered_files == saved


def test_a_retry_trains_when_the_kept_copy_lacks_its_manifest(
    s3_bucket: tuple[dict[str, str], Any, str],
    tiny_llama: TinyModel,
    tiny_hf_home: Path,
    offline_env: dict[str, str],
    tmp_path: Path,
) -> None:
    aws, client, bucket = s3_bucket
    environ = {**offline_env, **aws}
    _saved_by_first_attempt(tiny_llama, hf_home=tiny_hf_home, tmp_path=tmp_path, environ=environ)
    # A keep cut short before its last write: every file there, no manifest.
    client.delete_object(Bucket=bucket, Key=_saved_prefix(tmp_path) + MANIFEST_NAME)

    delivered = tmp_path / "models" / "model"
    outcome, reason, reporter = _retry_on_a_fresh_machine(
        tiny_llama, hf_home=tiny_hf_home, tmp_path=tmp_path, environ=environ, output=delivered
    )

    assert (outcome, reason) == (Outcome.SUCCEEDED, None)
    assert Stage.TRAINING in [s.name for s in reporter.transitions[-1][1]]
    assert any(p.step for p in reporter.progresses), "the retry did not train"
    assert (delivered / "config.json").is_file()


@pytest.fixture
def kept_in_store(
    s3_bucket: tuple[dict[str, str], Any, str],
    tmp_path: Path,
) -> tuple[S3Settings, Any, str, CheckpointPlace]:
    aws, client, bucket = s3_bucket
    settings = S3Settings.from_env(aws)
    folder = tmp_path / "output" / "m"
    (folder / "nested").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights" * 100)
    (folder / "nested" / "config.json").write_text('{"a": 1}')
    place = CheckpointPlace(
        local=tmp_path / "work" / "tiny" / "uid-1", remote=f"s3://{bucket}/{tmp_path.name}/tiny/uid-1"
    )
    keep(folder, place=place, name="m", s3=settings)
    return settings, client, bucket, place


def test_a_complete_copy_is_fetched_and_trusted_only_by_its_job(
    kept_in_store: tuple[S3Settings, Any, str, CheckpointPlace], tmp_path: Path
) -> None:
    settings, _, bucket, place = kept_in_store

    found = find(place, name="m", dist_info=DistInfo(), s3=settings)

    assert found == place.local / "saved" / "model"
    assert _files(found) == _files(tmp_path / "output" / "m")
    # The job re-created under the same name (another uid), and a job saving another model name, train.
    recreated = CheckpointPlace(
        local=tmp_path / "other" / "tiny" / "uid-2", remote=f"s3://{bucket}/{tmp_path.name}/tiny/uid-2"
    )
    assert find(recreated, name="m", dist_info=DistInfo(), s3=settings) is None
    assert find(place, name="another", dist_info=DistInfo(), s3=settings) is None


def test_a_copy_whose_file_changed_in_the_store_is_not_trusted(
    kept_in_store: tuple[S3Settings, Any, str, CheckpointPlace], tmp_path: Path
) -> None:
    settings, client, bucket, place = kept_in_store
    key = f"{tmp_path.name}/tiny/uid-1/saved/model/model.safetensors"
    client.put_object(Bucket=bucket, Key=key, Body=b"weights" * 99 + b"damaged")

    assert find(place, name="m", dist_info=DistInfo(), s3=settings) is None
    assert not (place.local / "saved").exists(), "a copy that failed its check was left where a run would read it"
