"""A step of 4 examples gives the same update in one micro-batch as in four (gradient accumulation)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from kubetune_trainer.context import DistInfo
from kubetune_trainer.contract import LrScheduler, LrSchedulerType
from kubetune_trainer.data.tokenization import TokenizedExample
from kubetune_trainer.report import RecordingReporter
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.loop import train
from kubetune_trainer.training.precision import plan_precision
from kubetune_trainer.training.schedule import build_scheduler
from kubetune_trainer.training.setup import load_model
from kubetune_trainer.training.steps import BatchingPlan, EpochSteps

from .training_jobs import chat_lines, tokenized, trainer_config


def _one_step(
    model_path: Path, examples: list[TokenizedExample], *, token_budget: int, packing: bool, tmp_path: Path
) -> tuple[int, float, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = load_model(model_path, dtype=torch.float32)
    # Plain SGD (lr 1): the weight change is the gradient itself, so equal weights mean equal gradients.
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = build_scheduler(
        optimizer, schedule=LrScheduler(type=LrSchedulerType.CONSTANT), total_steps=1, warmup_ratio=0.0
    )
    plan = BatchingPlan(examples_per_step=4, token_budget=token_budget, packing=packing, pad_token_id=0, seed=0)
    epoch = EpochSteps(examples, plan=plan, epoch=0)
    micro_batches = len(next(iter(epoch)).micro_batches)
    config = trainer_config(
        TinyModel("tiny-org/x", "0" * 40, model_path),
        work_dir=tmp_path,
        training_file=tmp_path / "unused.jsonl",
        batch_size=4,
        n_evals=0,
        max_grad_norm=0.0,
    )
    result = train(
        model,
        optimizer=optimizer,
        scheduler=scheduler,
        epochs=lambda _: epoch,
        total_steps=1,
        validation=[],
        hyperparameters=config.hyperparameters,
        precision=plan_precision(config.runtime.precision, device=torch.device("cpu")),
        device=torch.device("cpu"),
        dist_info=DistInfo(),
        reporter=RecordingReporter(),
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
        checkpoint_root=None,
        lora=False,
    )
    return micro_batches, result.losses[0], {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("packing", [True, False], ids=["packed", "padded"])
def test_one_micro_batch_and_four_give_the_same_weights(tiny_llama: TinyModel, tmp_path: Path, packing: bool) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama.snapshot_path))
    candidates = tokenized(tokenizer, chat_lines(64, seed=3))
    # Four examples of similar length (each longer than half the longest), so a budget of the
    # longest one fits exactly one example per micro-batch.
    candidates.sort(key=len)
    examples = candidates[-4:]
    longest = len(examples[-1])
    assert 2 * len(examples[0]) > longest

    whole = _one_step(tiny_llama.snapshot_path, examples, token_budget=4 * longest, packing=packing, tmp_path=tmp_path)
    split = _one_step(tiny_llama.snapshot_path, examples, token_budget=longest, packing=packing, tmp_path=tmp_path)

    assert (whole[0], split[0]) == (1, 4)
    assert split[1] == pytest.approx(whole[1], abs=1e-6)
    for name, weight in whole[2].items():
        torch.testing.assert_close(split[2][name], weight, rtol=0, atol=1e-5, msg=name)
    original = load_model(tiny_llama.snapshot_path, dtype=torch.float32).state_dict()
    assert not torch.equal(original["model.layers.0.mlp.up_proj.weight"], whole[2]["model.layers.0.mlp.up_proj.weight"])
