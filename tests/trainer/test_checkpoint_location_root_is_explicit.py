"""A job's checkpoint directory is `<checkpointRoot>/<job>`, the same seen from the job itself and from any
job that names it in fromCheckpoint.

Without `runtime.checkpointRoot` (configs written before it) the directory is guessed from
`checkpointUri`: a location ending in the job's own name is taken for that job's directory.
The guess misfires for a job named like the last segment of a shared root: job `runs` under
`s3://b/runs` writes to `s3://b/runs` while a job naming it in fromCheckpoint looks in
`s3://b/runs/runs`. The operator now says which location is the root.
"""

from __future__ import annotations

from pathlib import Path

from kubetune_trainer.training.checkpoint_location import CheckpointPlace, job_checkpoints


def _seen(location: str, *, job: str, own_job: str, tmp_path: Path, root: str | None) -> CheckpointPlace:
    return job_checkpoints(
        location, job=job, own_job=own_job, work_checkpoints=tmp_path / "work", pvc_mount_root="/mnt/pvc", root=root
    )


def test_with_a_root_a_job_is_found_where_it_wrote(tmp_path: Path) -> None:
    root = f"{tmp_path}/runs"
    own = _seen(root, job="runs", own_job="runs", tmp_path=tmp_path, root=root)
    from_other = _seen(root, job="runs", own_job="other", tmp_path=tmp_path, root=root)

    assert own == from_other == CheckpointPlace(local=tmp_path / "runs" / "runs")


def test_the_default_layout_keeps_its_directories(tmp_path: Path) -> None:
    root = "s3://ckpt/ml"
    own = _seen(f"{root}/chat", job="chat", own_job="chat", tmp_path=tmp_path, root=root)
    other = _seen(f"{root}/chat", job="base", own_job="chat", tmp_path=tmp_path, root=root)

    assert own == CheckpointPlace(local=tmp_path / "work" / "chat", remote="s3://ckpt/ml/chat")
    assert other == CheckpointPlace(local=tmp_path / "work" / "base", remote="s3://ckpt/ml/base")


def test_without_a_root_the_old_guess_still_applies_and_misfires(tmp_path: Path) -> None:
    location = "s3://b/runs"
    own = _seen(location, job="runs", own_job="runs", tmp_path=tmp_path, root=None)
    from_other = _seen(location, job="runs", own_job="other", tmp_path=tmp_path, root=None)

    assert own.remote == "s3://b/runs"
    assert from_other.remote == "s3://b/runs/runs"  # why the operator now passes the root
