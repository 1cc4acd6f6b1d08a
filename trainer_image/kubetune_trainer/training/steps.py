"""The data planner's steps as the loop consumes them: this rank's collated micro-batches, lazily.

`data.batching.plan_epoch` decides which examples make each optimizer step and how they split
into micro-batches; `data.packing` turns a micro-batch into tensors. This module joins the two
for one rank, collating a step only when the loop reaches it (an epoch of tensors at once would
hold the whole data set twice).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..data.batching import count_steps, plan_epoch
from ..data.packing import ModelBatch, collate_packed, collate_padded
from ..data.tokenization import TokenizedExample


@dataclass(frozen=True)
class BatchingPlan:
    """How examples become micro-batches: the same for every epoch and every rank."""

    examples_per_step: int
    token_budget: int
    packing: bool
    pad_token_id: int
    seed: int
    rank: int = 0
    world_size: int = 1

    def collate(self, examples: Sequence[TokenizedExample]) -> ModelBatch:
        if self.packing:
            return collate_packed(examples)
        return collate_padded(examples, pad_token_id=self.pad_token_id)


@dataclass(frozen=True)
class StepBatches:
    """One optimizer step: this rank's micro-batches, and the step's totals over every rank."""

    micro_batches: Sequence[ModelBatch]
    label_tokens: int
    """Tokens in the loss over the whole step on all ranks: the loss divisor."""
    tokens: int
    """Real (non-pad) tokens over the whole step on all ranks: what tokens/s counts."""


class EpochSteps:
    """The optimizer steps of one epoch, planned up front and collated as they are reached."""

    def __init__(self, examples: Sequence[TokenizedExample], *, plan: BatchingPlan, epoch: int) -> None:
        self._examples = examples
        self._plan = plan
        self._steps = plan_epoch(
            [len(example) for example in examples],
            examples_per_step=plan.examples_per_step,
            token_budget=plan.token_budget,
            seed=plan.seed,
            epoch=epoch,
            packing=plan.packing,
            world_size=plan.world_size,
        ).steps

    def __len__(self) -> int:
        return len(self._steps)

    def __iter__(self) -> Iterator[StepBatches]:
        examples = self._examples
        for step in self._steps:
            yield StepBatches(
                micro_batches=[
                    self._plan.collate([examples[i] for i in batch])
                    for batch in step.for_rank(self._plan.rank, self._plan.world_size)
                ],
                label_tokens=step.label_tokens(examples),
                tokens=sum(len(examples[i]) for i in step.indices),
            )


def steps_per_epoch(examples: int, *, plan: BatchingPlan) -> int:
    return count_steps(examples, examples_per_step=plan.examples_per_step, world_size=plan.world_size)


def validation_batches(examples: Sequence[TokenizedExample], *, plan: BatchingPlan) -> list[ModelBatch]:
    """This rank's share of the validation examples, collated into micro-batches of the same budget."""
    if len(examples) < plan.world_size:
        # Too few to share. Every rank evaluates them all: summed losses and counts both grow
        # by the world size, so their ratio, the eval loss, is unchanged.
        return [plan.collate([example]) for example in examples]
    whole = plan_epoch(
        [len(example) for example in examples],
        examples_per_step=len(examples),
        token_budget=plan.token_budget,
        seed=plan.seed,
        epoch=0,
        packing=plan.packing,
        world_size=plan.world_size,
    )
    return [
        plan.collate([examples[i] for i in batch])
        for step in whole.steps
        for batch in step.for_rank(plan.rank, plan.world_size)
    ]
