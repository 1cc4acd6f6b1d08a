"""More training processes than a step's examples (or than the data) is refused by field, not trained.

`kubetune run --local --nproc-per-node 4` with batchSize 2 used to fail with a bare ValueError
from the planner, and two processes on one example trained zero steps and saved the base model
as if it were the fine-tuned one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from kubetune_trainer.context import DistInfo
from kubetune_trainer.contract import AttentionKernel, TrainingPerformance
from kubetune_trainer.errors import InvalidInput
from kubetune_trainer.handoffs import InitializedRun
from kubetune_trainer.stages import train as training_stage
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.precision import plan_precision
from kubetune_trainer.training.setup import TrainingSetup

from .training_jobs import chat_lines, tokenized, trainer_config, training_context


def _refusal(tiny_llama: TinyModel, tmp_path: Path, *, examples: int, batch_size: int, world: int) -> InvalidInput:
    config = trainer_config(tiny_llama, work_dir=tmp_path, training_file=tmp_path / "t.jsonl", batch_size=batch_size)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama.snapshot_path))
    ctx, _, downloaded = training_context(
        config,
        model=tiny_llama,
        tokenizer=tokenizer,
        train=tokenized(tokenizer, chat_lines(examples, seed=1)),
        dist=DistInfo(rank=0, world_size=world),
    )
    cpu = torch.device("cpu")
    setup = TrainingSetup(device=cpu, precision=plan_precision(config.runtime.precision, device=cpu), lora=False)
    initialized = InitializedRun(
        model=torch.nn.Linear(2, 2),
        setup=setup,
        kernels=TrainingPerformance(attention=AttentionKernel.SDPA, compiled=False, device="cpu"),
    )
    with pytest.raises(InvalidInput) as refused:
        training_stage.run(ctx, downloaded, initialized)
    return refused.value


def test_a_batch_smaller_than_the_processes_names_batch_size(tiny_llama: TinyModel, tmp_path: Path) -> None:
    refused = _refusal(tiny_llama, tmp_path, examples=8, batch_size=2, world=4)
    assert refused.field == "hyperparameters.batchSize"
    assert refused.reason == "BatchSizeBelowWorldSize"
    assert refused.hint is not None
    assert "batchSize to 4 or more" in refused.hint


def test_fewer_examples_than_processes_names_the_training_file(tiny_llama: TinyModel, tmp_path: Path) -> None:
    refused = _refusal(tiny_llama, tmp_path, examples=1, batch_size=8, world=2)
    assert refused.field == "spec.trainingFile"
    assert refused.reason == "TooFewExamples"
