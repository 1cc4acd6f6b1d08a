"""`EpochSteps(start=k)` gives the full epoch's steps from k on; the skipped ones are never collated."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from kubetune_trainer.data.packing import ModelBatch
from kubetune_trainer.data.tokenization import TokenizedExample
from kubetune_trainer.training.resumed_epoch import epoch_steps
from kubetune_trainer.training.steps import BatchingPlan, EpochSteps


@dataclass(frozen=True)
class CountingPlan(BatchingPlan):
    """The real plan, counting the examples it collates."""

    collated: list[int] = field(default_factory=list, compare=False)

    def collate(self, examples: Sequence[TokenizedExample]) -> ModelBatch:
        self.collated.append(len(examples))
        return super().collate(examples)


def _examples(count: int) -> list[TokenizedExample]:
    return [
        TokenizedExample(input_ids=[1 + i % 7] * (3 + i % 5), labels=[-100] + [2] * (2 + i % 5)) for i in range(count)
    ]


def test_a_resumed_epoch_yields_the_tail_of_the_full_epoch_with_the_runs_step_numbers() -> None:
    examples = _examples(24)
    plan = BatchingPlan(examples_per_step=4, token_budget=8, packing=False, pad_token_id=0, seed=3)
    full = list(EpochSteps(examples, plan=plan, epoch=1))
    resumed = EpochSteps(examples, plan=plan, epoch=1, start=4)

    assert len(resumed) == len(full) == 6
    tail = list(resumed)
    assert [step.number for step in tail] == [step.number for step in full[4:]] == [11, 12]
    for got, want in zip(tail, full[4:], strict=True):
        assert got.label_tokens == want.label_tokens
        assert len(got.micro_batches) == len(want.micro_batches)
        for a, b in zip(got.micro_batches, want.micro_batches, strict=True):
            assert torch.equal(a.input_ids, b.input_ids)
            assert torch.equal(a.labels, b.labels)


def test_the_skipped_steps_are_never_collated() -> None:
    examples = _examples(24)
    plan = CountingPlan(examples_per_step=4, token_budget=1000, packing=False, pad_token_id=0, seed=3)
    steps = list(epoch_steps(examples, plan=plan, epoch=0, start=5))

    assert len(steps) == 1
    assert sum(plan.collated) == 4  # the last step's examples only
