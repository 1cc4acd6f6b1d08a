"""The checkpoint step of a stalled run is one its retry can load.

The operator resumes the next attempt from `<job>:<step>` when the Result names a step, and a
named step that is not there is refused (InvalidInput, not retried). Under an `s3://` location a
checkpoint is written to the work directory first and copied to the store after; a stall during
that copy leaves a local checkpoint with its marker that the store lacks. The watchdog, which
cannot ask the store from a stalled process, names no step there (the retry takes the newest
checkpoint in the store); on a filesystem location it names the newest marked one.
"""

from __future__ import annotations

from pathlib import Path

from kubetune_trainer.contract import TrainerConfig
from kubetune_trainer.training.checkpoint import COMPLETE_FILE, checkpoint_dir
from kubetune_trainer.watchdog import newest_complete_checkpoint

from .local_runs import trainer_config


def _with_location(tmp_path: Path, uri: str) -> TrainerConfig:
    config = trainer_config(tmp_path)
    return config.model_copy(update={"runtime": config.runtime.model_copy(update={"checkpoint_uri": uri})})


def _marked(directory: Path, step: int) -> None:
    checkpoint = checkpoint_dir(directory, step)
    checkpoint.mkdir(parents=True)
    (checkpoint / COMPLETE_FILE).write_text("{}", encoding="utf-8")


def test_a_checkpoint_only_in_the_work_directory_is_not_named_under_s3(tmp_path: Path) -> None:
    config = _with_location(tmp_path, "s3://bucket/checkpoints")
    _marked(Path(config.runtime.work_dir) / "checkpoints" / config.job.name / config.job.uid, 2)

    assert newest_complete_checkpoint(config) is None


def test_the_newest_marked_checkpoint_is_named_on_a_filesystem_location(tmp_path: Path) -> None:
    config = _with_location(tmp_path, f"file://{tmp_path / 'store'}")
    _marked(tmp_path / "store" / config.job.name / config.job.uid, 2)  # the job's own: its uid's
    _marked(tmp_path / "store" / config.job.name / config.job.uid, 4)

    assert newest_complete_checkpoint(config) == 4
