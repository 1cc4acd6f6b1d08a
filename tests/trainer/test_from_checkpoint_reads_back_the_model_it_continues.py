"""A job's checkpoints record the model they continue (`MODEL.json`: repo and commit, beside the steps);
a job starting from them reads it back and refuses another model rather than load mismatched weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune_trainer.errors import InvalidInput
from kubetune_trainer.stages.train import check_same_model
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.checkpoint_location import CheckpointModel, ResumeReference

from .training_jobs import trainer_config, training_context

SOURCE = ResumeReference.parse("base-chat@5d1e:40")


def test_the_recorded_model_reads_back(tmp_path: Path) -> None:
    CheckpointModel(repo="acme/llama-support", revision_sha="1" * 40).write(tmp_path / "base-chat" / "5d1e")
    assert CheckpointModel.read(tmp_path / "base-chat" / "5d1e") == CheckpointModel("acme/llama-support", "1" * 40)
    assert CheckpointModel.read(tmp_path / "nowhere") is None


def test_checkpoints_of_another_model_are_refused_naming_from_checkpoint(tiny_llama: TinyModel, tmp_path: Path) -> None:
    config = trainer_config(tiny_llama, work_dir=tmp_path, training_file=tmp_path / "unused.jsonl")
    ctx, _, _ = training_context(config, model=tiny_llama, tokenizer=None, train=[])
    source_dir = tmp_path / "base-chat" / "5d1e"
    CheckpointModel(repo=config.model.repo, revision_sha="2" * 40).write(source_dir)
    check_same_model(ctx, source_dir, reference=SOURCE, revision_sha="2" * 40)  # the same repo and commit: accepted

    CheckpointModel(repo="acme/other-model", revision_sha="3" * 40).write(source_dir)
    with pytest.raises(InvalidInput) as refused:
        check_same_model(ctx, source_dir, reference=SOURCE, revision_sha="2" * 40)
    assert (refused.value.reason, refused.value.field) == ("CheckpointModelMismatch", "fromCheckpoint")
    assert "acme/other-model@" + "3" * 40 in str(refused.value)
