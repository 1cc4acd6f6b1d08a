"""The epoch a resumed run starts in: the steps a checkpoint already holds are skipped, never collated.

The planner's steps are a pure function of the seed, the epoch, the world size and the data, so
the resumed run plans the same epoch again and starts at the checkpoint's `step_in_epoch`
(`EpochSteps(start=...)`). Collating the skipped steps would cost the tensors of up to a whole
epoch for nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..data.batching import Plannable
from .steps import BatchingPlan, EpochSteps


def epoch_steps(examples: Sequence[Plannable], *, plan: BatchingPlan, epoch: int, start: int = 0) -> EpochSteps:
    """Epoch `epoch`'s steps from step `start` of it (0: all of them)."""
    return EpochSteps(examples, plan=plan, epoch=epoch, start=start)
