"""The data planner's steps as the loop consumes them: this rank's collated micro-batches, lazily.

`data.batching.plan_epoch` decides which examples make each optimizer step and how they split
into micro-batches; `data.packing` turns a micro-batch into tensors. This module joins the two
for one rank, collating a step only when the loop reaches it (an epoch of tensors at once would
hold the whole data set twice).

The micro-batch token budget can shrink during a run (out-of-memory remediation,
`training.oom`): the plan's `MicroBatchBudget` is shared by every epoch, and a step is re-planned
at the smaller budget. Re-planning the whole epoch keeps every step's examples and gives exactly
the micro-batches a run started at that budget would have had.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from ..data.batching import OptimizerStep, Plannable, count_steps, plan_epoch
from ..data.packing import ModelBatch, collate_packed, collate_padded
from ..data.preference_pairs import TokenizedPair, collate_pairs
from ..data.tokenization import TokenizedExample


@dataclass
class MicroBatchBudget:
    """The token budget in force, once out-of-memory remediation lowered it below the plan's."""

    reduced_to: int | None = None
    """Tokens per micro-batch; below the longest example, one example per micro-batch."""


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
    budget: MicroBatchBudget = field(default_factory=MicroBatchBudget, compare=False)
    """Shared by every epoch of a run: a budget lowered in one step holds for the steps after it."""

    @property
    def current_budget(self) -> int:
        return self.token_budget if self.budget.reduced_to is None else self.budget.reduced_to

    def collate(self, examples: Sequence[Plannable]) -> ModelBatch:
        pairs = [example for example in examples if isinstance(example, TokenizedPair)]
        if pairs:  # preference pairs are padded, never packed (data.preference_pairs)
            return collate_pairs(pairs, pad_token_id=self.pad_token_id)
        sequences = [example for example in examples if isinstance(example, TokenizedExample)]
        if self.packing:
            return collate_packed(sequences)
        return collate_padded(sequences, pad_token_id=self.pad_token_id)


@dataclass(frozen=True)
class StepBatches:
    """One optimizer step: this rank's micro-batches, and the step's totals over every rank."""

    micro_batches: Sequence[ModelBatch]
    label_tokens: int
    """Tokens in the loss over the whole step on all ranks: the loss divisor."""
    tokens: int
    """Real (non-pad) tokens over the whole step on all ranks: what tokens/s counts."""
    number: int = 0
    """Optimizer step, 1-based over the whole run (epochs before included); 0 when unknown."""
    token_budget: int = 0
    """The budget the micro-batches were formed with; 0 when unknown."""
    reduce_budget: Callable[[int], StepBatches] | None = None
    """Lower the run's budget to the given tokens and re-plan this step's examples at it; None: cannot."""

    @property
    def one_example_per_micro_batch(self) -> bool:
        return all(batch.examples == 1 for batch in self.micro_batches)


class EpochSteps:
    """The optimizer steps of one epoch, planned up front and collated as they are reached.

    `start` skips the epoch's first steps without collating them (a resumed run: the checkpoint
    already holds them); the length stays the whole epoch's, and step numbers stay the run's.
    """

    def __init__(self, examples: Sequence[Plannable], *, plan: BatchingPlan, epoch: int, start: int = 0) -> None:
        self._examples = examples
        self._plan = plan
        self._epoch = epoch
        self._start = start
        self._lengths = [len(example) for example in examples]
        self._plans: dict[int, tuple[OptimizerStep, ...]] = {}
        self._steps = self._planned(plan.token_budget)

    def __len__(self) -> int:
        return len(self._steps)

    def __iter__(self) -> Iterator[StepBatches]:
        for index in range(self._start, len(self._steps)):
            yield self._step(index, budget=self._plan.current_budget)

    def _planned(self, budget: int) -> tuple[OptimizerStep, ...]:
        """The epoch's steps at `budget`; below the longest example, one example per micro-batch."""
        if budget not in self._plans:
            longest = max(self._lengths, default=0)
            steps = plan_epoch(
                self._lengths,
                examples_per_step=self._plan.examples_per_step,
                token_budget=max(budget, longest),
                seed=self._plan.seed,
                epoch=self._epoch,
                packing=self._plan.packing,
                world_size=self._plan.world_size,
            ).steps
            if budget < longest and self._plan.world_size == 1:
                steps = tuple(OptimizerStep(micro_batches=tuple((i,) for i in step.indices)) for step in steps)
            self._plans[budget] = steps
        return self._plans[budget]

    def _step(self, index: int, *, budget: int) -> StepBatches:
        examples = self._examples
        step = self._planned(budget)[index]
        return StepBatches(
            micro_batches=[
                self._plan.collate([examples[i] for i in batch])
                for batch in step.for_rank(self._plan.rank, self._plan.world_size)
            ],
            label_tokens=step.label_tokens(examples),
            tokens=sum(len(examples[i]) for i in step.indices),
            number=self._epoch * len(self._steps) + index + 1,
            token_budget=budget,
            reduce_budget=lambda smaller: self._reduced(index, budget=smaller),
        )

    def _reduced(self, index: int, *, budget: int) -> StepBatches:
        self._plan.budget.reduced_to = budget
        return self._step(index, budget=budget)


def steps_per_epoch(examples: int, *, plan: BatchingPlan) -> int:
    return count_steps(examples, examples_per_step=plan.examples_per_step, world_size=plan.world_size)


def validation_batches(examples: Sequence[Plannable], *, plan: BatchingPlan) -> list[ModelBatch]:
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
