"""The epoch a resumed run starts in: the steps a checkpoint already holds are skipped, never collated.

The planner's steps are a pure function of the seed, the epoch, the world size and the data, so
the resumed run plans the same epoch again and starts at the checkpoint's `step_in_epoch`.
Collating the skipped steps would cost the tensors of up to a whole epoch for nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..data.tokenization import TokenizedExample
from .steps import BatchingPlan, EpochSteps, StepBatches


class ResumedEpoch(EpochSteps):
    """`EpochSteps` from step `start` of the epoch on; its length stays the whole epoch's."""

    def __init__(self, examples: Sequence[TokenizedExample], *, plan: BatchingPlan, epoch: int, start: int) -> None:
        super().__init__(examples, plan=plan, epoch=epoch)
        self._start = start

    def __iter__(self) -> Iterator[StepBatches]:
        for index in range(self._start, len(self)):
            yield self._step(index, budget=self._plan.current_budget)


def epoch_steps(examples: Sequence[TokenizedExample], *, plan: BatchingPlan, epoch: int, start: int = 0) -> EpochSteps:
    """Epoch `epoch`'s steps from step `start` of it (0: all of them)."""
    if start == 0:
        return EpochSteps(examples, plan=plan, epoch=epoch)
    return ResumedEpoch(examples, plan=plan, epoch=epoch, start=start)
