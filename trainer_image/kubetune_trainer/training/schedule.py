"""Learning-rate schedules: linear warmup, then linear, cosine or constant.

The schedule is a pure function of the step (`lr_multiplier`), so tests check its values
directly and the optimizer's `LambdaLR` only multiplies the peak learning rate by it.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from ..contract import LrScheduler, LrSchedulerType


def warmup_steps_for(total_steps: int, warmup_ratio: float) -> int:
    """Steps of linear warmup: the ratio of the whole run, rounded up so a non-zero ratio warms up."""
    return min(total_steps, math.ceil(total_steps * warmup_ratio))


def lr_multiplier(step: int, *, schedule: LrScheduler, total_steps: int, warmup_steps: int) -> float:
    """Fraction of the peak learning rate used for optimizer step `step` (0-based).

    Warmup rises linearly to 1 over `warmup_steps`; afterwards the schedule falls from 1 to
    `min_lr_ratio` at the last step (cosine over `num_cycles` cycles, 0.5 being one half wave).
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule.type is LrSchedulerType.CONSTANT:
        return 1.0
    decay_steps = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    floor = schedule.min_lr_ratio
    if schedule.type is LrSchedulerType.LINEAR:
        return floor + (1.0 - floor) * (1.0 - progress)
    wave = 0.5 * (1.0 + math.cos(2.0 * math.pi * schedule.num_cycles * progress))
    return floor + (1.0 - floor) * wave


def build_scheduler(optimizer: Optimizer, *, schedule: LrScheduler, total_steps: int, warmup_ratio: float) -> LambdaLR:
    """A `LambdaLR` stepping once per optimizer step along `lr_multiplier`."""
    warmup = warmup_steps_for(total_steps, warmup_ratio)
    return LambdaLR(
        optimizer,
        lambda step: lr_multiplier(step, schedule=schedule, total_steps=total_steps, warmup_steps=warmup),
    )
