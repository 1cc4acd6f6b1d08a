"""A step retried in smaller micro-batches runs after the failed pass's activations are freed, not beside them.

The out-of-memory exception's traceback holds the failed forward's tensors; if anything keeps the
exception in a reference cycle, only Python's garbage collector frees them, and on a GPU the retry
runs out of memory again. The garbage collector is off here, so only reference counting frees.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from kubetune_trainer.data.tokenization import TokenizedExample
from kubetune_trainer.training.accumulate import accumulate_step
from kubetune_trainer.training.oom import OomPolicy
from kubetune_trainer.training.precision import PrecisionPlan
from kubetune_trainer.training.steps import BatchingPlan, EpochSteps

FITS = 8
"""Tokens a forward pass can hold; a larger micro-batch runs out of memory after its first activation."""


class SmallMemory(nn.Module):
    """An embedding whose forward 'runs out of memory' above FITS tokens, after allocating an activation."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(16, 8)
        self.failed: list[weakref.ref[torch.Tensor]] = []
        self.alive_when_retried: list[int] = []

    def forward(self, input_ids: torch.Tensor, logits_to_keep: torch.Tensor, **_: Any) -> SimpleNamespace:
        hidden = self.embedding(input_ids) * 2.0
        if input_ids.numel() > FITS:
            self.failed.append(weakref.ref(hidden))
            raise torch.OutOfMemoryError("CUDA out of memory (test)")
        self.alive_when_retried.append(sum(ref() is not None for ref in self.failed))
        return SimpleNamespace(logits=hidden[:, logits_to_keep])


@pytest.fixture
def no_garbage_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("no_garbage_collector")
def test_the_retry_runs_after_the_failed_pass_is_freed() -> None:
    examples = [TokenizedExample(input_ids=[1, 2, 3, 4, 5, 6], labels=[-100, 2, 3, 4, 5, 6]) for _ in range(4)]
    plan = BatchingPlan(examples_per_step=4, token_budget=24, packing=True, pad_token_id=0, seed=0)
    step = next(iter(EpochSteps(examples, plan=plan, epoch=0)))
    model = SmallMemory()

    accumulate_step(
        model,
        step,
        world_size=1,
        precision=PrecisionPlan(load_dtype=torch.float32, autocast_dtype=None, device_type="cpu"),
        device=torch.device("cpu"),
        scaler=None,
        oom=OomPolicy(auto_batch=True),
    )

    assert len(model.failed) == 2  # 24 tokens, then 12, ran out; 6 (one example each) fit
    assert model.alive_when_retried == [0, 0, 0, 0]
