"""Checkpoints belong to one FineTuneJob: `<root>/<job>/<uid>/`, so a job re-created under the same name
(a new uid) never resumes, or is refused by, the checkpoints of the job that had its name before."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune_trainer.errors import InvalidInput
from kubetune_trainer.training.checkpoint import COMPLETE_FILE, checkpoint_dir
from kubetune_trainer.training.checkpoint_location import CheckpointPlace, ResumeReference, job_checkpoints, sole_uid
from kubetune_trainer.training.resume import marked_checkpoints


def _place(root: Path, *, job: str, uid: str | None, tmp_path: Path) -> CheckpointPlace:
    return job_checkpoints(
        str(root),
        job=job,
        own_job=job,
        work_checkpoints=tmp_path / "work",
        pvc_mount_root="/mnt/pvc",
        root=str(root),
        uid=uid,
    )


def test_a_recreated_job_sees_none_of_the_earlier_jobs_checkpoints(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    earlier = _place(root, job="chat", uid="uid-old", tmp_path=tmp_path)
    step = checkpoint_dir(earlier.local, 721)
    step.mkdir(parents=True)
    (step / COMPLETE_FILE).write_text("{}", encoding="utf-8")
    assert marked_checkpoints(earlier.local) == {721: step}

    recreated = _place(root, job="chat", uid="uid-new", tmp_path=tmp_path)
    assert recreated.local == root / "chat" / "uid-new"
    assert marked_checkpoints(recreated.local) == {}, "the re-created job would resume the deleted job's step 721"


def test_an_object_store_location_is_keyed_the_same_way(tmp_path: Path) -> None:
    place = job_checkpoints(
        "s3://ckpt/ml/chat",
        job="chat",
        own_job="chat",
        work_checkpoints=tmp_path,
        pvc_mount_root="/mnt/pvc",
        root="s3://ckpt/ml",
        uid="1f2e",
    )
    assert place == CheckpointPlace(local=tmp_path / "chat" / "1f2e", remote="s3://ckpt/ml/chat/1f2e")


def test_a_reference_names_the_uid_and_the_step() -> None:
    reference = ResumeReference.parse("base@0b7c-11aa:40")
    assert (reference.job, reference.uid, reference.step) == ("base", "0b7c-11aa", 40)
    assert str(reference) == "base@0b7c-11aa:40"
    assert ResumeReference.parse("base").uid is None
    with pytest.raises(InvalidInput):
        ResumeReference.parse("base@:40")


def test_a_reference_without_uid_finds_the_only_job_that_wrote_under_the_name(tmp_path: Path) -> None:
    job_dir = tmp_path / "chat"
    (job_dir / "uid-a" / "step-00000003").mkdir(parents=True)
    assert sole_uid(job_dir) == "uid-a"
    (job_dir / "uid-b").mkdir()
    assert sole_uid(job_dir) is None, "two jobs had the name: the reference must name the uid"
