"""Plan an epoch: which examples make each optimizer step, and how they split into micro-batches.

`batchSize` is the effective batch: examples per optimizer step. The examples are shuffled
deterministically from the seed and the epoch, then taken `examples_per_step` at a time; the
examples of one step are grouped into micro-batches of at most `token_budget` tokens:

- packed: first-fit decreasing by length, so micro-batches are full and few;
- padded: longest first, so each micro-batch holds examples of similar length and pads little
  (its cost is rows x longest row).

Grouping never moves an example to another step, so what one optimizer step learns from does not
depend on the budget: a smaller budget only means more, smaller forward passes (gradient
accumulation), and the loss normalised by the step's label tokens is the same.

With several data-parallel ranks each step's micro-batch count is a multiple of the world size, and
rank r runs micro-batches r, r + W, ...; every rank can compute the step's label-token total from
the plan alone, with no collective. A final step with fewer examples than ranks is dropped (counted
in `EpochPlan.dropped`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class Plannable(Protocol):
    """What the planner needs of an example: its length, and its units in the loss (tokens, or 1 per pair)."""

    def __len__(self) -> int: ...

    @property
    def label_tokens(self) -> int: ...


MicroBatch = tuple[int, ...]
"""Indices of the examples of one forward pass."""


@dataclass(frozen=True)
class OptimizerStep:
    """The micro-batches of one optimizer step, as example indices."""

    micro_batches: tuple[MicroBatch, ...]

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(index for batch in self.micro_batches for index in batch)

    def for_rank(self, rank: int, world_size: int) -> tuple[MicroBatch, ...]:
        """The micro-batches rank `rank` of `world_size` runs; every rank gets the same number."""
        return self.micro_batches[rank::world_size]

    def label_tokens(self, examples: Sequence[Plannable]) -> int:
        """Tokens in the loss over the whole step, across all ranks: the loss divisor."""
        return sum(examples[index].label_tokens for index in self.indices)


@dataclass(frozen=True)
class EpochPlan:
    steps: tuple[OptimizerStep, ...]
    dropped: tuple[int, ...] = ()
    """Examples left out: a final step with fewer examples than ranks."""


def count_steps(examples: int, *, examples_per_step: int, world_size: int = 1) -> int:
    """Optimizer steps in one epoch, as `plan_epoch` makes them (for schedules and progress)."""
    full, rest = divmod(examples, examples_per_step)
    return full + (1 if rest and rest >= world_size else 0)


def plan_epoch(
    lengths: Sequence[int],
    *,
    examples_per_step: int,
    token_budget: int,
    seed: int,
    epoch: int,
    packing: bool = True,
    world_size: int = 1,
) -> EpochPlan:
    """The steps of epoch `epoch`: the same inputs always give the same plan."""
    if examples_per_step < world_size:
        raise ValueError(f"a step of {examples_per_step} examples cannot feed {world_size} ranks")
    too_long = [index for index, length in enumerate(lengths) if length > token_budget]
    if too_long:
        raise ValueError(
            f"example {too_long[0]} has {lengths[too_long[0]]} tokens, above the micro-batch budget of {token_budget}; "
            "the budget must be at least max_seq_length"
        )
    order = list(range(len(lengths)))
    # A string seed hashes the same in every process (unlike hash()), so all ranks agree.
    random.Random(f"kubetune:{seed}:{epoch}").shuffle(order)
    steps: list[OptimizerStep] = []
    dropped: tuple[int, ...] = ()
    for start in range(0, len(order), examples_per_step):
        chosen = order[start : start + examples_per_step]
        if len(chosen) < world_size:
            dropped = tuple(chosen)
            break
        group = _pack(chosen, lengths, budget=token_budget) if packing else _pad(chosen, lengths, budget=token_budget)
        steps.append(OptimizerStep(micro_batches=_for_ranks(group, lengths, world_size=world_size)))
    return EpochPlan(steps=tuple(steps), dropped=dropped)


def _pack(chosen: list[int], lengths: Sequence[int], *, budget: int) -> list[list[int]]:
    bins: list[list[int]] = []
    used: list[int] = []
    for index in sorted(chosen, key=lambda i: -lengths[i]):
        for slot, total in enumerate(used):
            if total + lengths[index] <= budget:
                bins[slot].append(index)
                used[slot] += lengths[index]
                break
        else:
            bins.append([index])
            used.append(lengths[index])
    return bins


def _pad(chosen: list[int], lengths: Sequence[int], *, budget: int) -> list[list[int]]:
    bins: list[list[int]] = []
    for index in sorted(chosen, key=lambda i: -lengths[i]):
        # Sorted longest first: the first example of a bin sets its padded width.
        if bins and (len(bins[-1]) + 1) * lengths[bins[-1][0]] <= budget:
            bins[-1].append(index)
        else:
            bins.append([index])
    return bins


def _for_ranks(bins: list[list[int]], lengths: Sequence[int], *, world_size: int) -> tuple[MicroBatch, ...]:
    bins = [list(batch) for batch in bins]
    while len(bins) % world_size:
        # Split the heaviest splittable micro-batch until every rank gets the same number.
        splittable = [batch for batch in bins if len(batch) > 1]
        heaviest = max(splittable, key=lambda batch: sum(lengths[i] for i in batch))
        bins.remove(heaviest)
        bins.extend([heaviest[0::2], heaviest[1::2]])
    # Heaviest first, dealt round-robin: ranks get similar token counts.
    bins.sort(key=lambda batch: -sum(lengths[i] for i in batch))
    return tuple(tuple(batch) for batch in bins)
