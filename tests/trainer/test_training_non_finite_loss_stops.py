"""A loss that is no longer a number stops training with a RuntimeError-class failure, NonFiniteLoss."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from kubetune_trainer.classify import classify
from kubetune_trainer.contract import ErrorClass, Stage
from kubetune_trainer.errors import ComputationFailed
from kubetune_trainer.stages import initialize, train
from kubetune_trainer.tiny_model import TinyModel

from .training_jobs import chat_lines, tokenized, trainer_config, training_context, write_jsonl


def test_a_corrupt_weight_stops_training_at_the_first_step(tiny_llama: TinyModel, tmp_path: Path) -> None:
    # A checkpoint with one non-finite weight: it loads fine and every loss is NaN.
    corrupt = tmp_path / "corrupt-snapshot"
    shutil.copytree(tiny_llama.snapshot_path, corrupt)
    weights = load_file(str(corrupt / "model.safetensors"))
    (corrupt / "model.safetensors").unlink()
    weights["model.layers.0.mlp.down_proj.weight"][0, 0] = torch.inf
    save_file(weights, str(corrupt / "model.safetensors"), metadata={"format": "pt"})
    model = TinyModel(tiny_llama.repo_id, tiny_llama.revision_sha, corrupt)

    tokenizer = AutoTokenizer.from_pretrained(str(corrupt))
    lines = chat_lines(16, seed=5)
    config = trainer_config(model, work_dir=tmp_path, training_file=write_jsonl(tmp_path / "t.jsonl", lines))
    ctx, reporter, downloaded = training_context(
        config, model=model, tokenizer=tokenizer, train=tokenized(tokenizer, lines)
    )
    initialized = initialize.run(ctx, downloaded)

    with pytest.raises(ComputationFailed) as caught:
        train.run(ctx, downloaded, initialized)

    error = classify(caught.value, stage=Stage.TRAINING, job_uid="uid-1234")
    assert (error.error_class, error.reason) == (ErrorClass.RUNTIME_ERROR, "NonFiniteLoss")
    assert "step 1" in error.message
    assert error.hint is not None
    assert "learningRate" in error.hint
    assert not any(p.loss is not None for p in reporter.progresses)  # no step was taken with a NaN loss
    assert not ctx.paths.checkpoints.exists()
