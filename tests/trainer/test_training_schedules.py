"""Learning-rate schedules: linear warmup to the peak, then linear, cosine (minLrRatio, numCycles) or constant."""

from __future__ import annotations

import pytest
import torch

from kubetune_trainer.contract import LrScheduler, LrSchedulerType
from kubetune_trainer.training.schedule import build_scheduler, lr_multiplier, warmup_steps_for

TOTAL = 111  # steps 0..110: 12 warmup steps (10%, rounded up), then the decay over steps 12..110
WARMUP = warmup_steps_for(TOTAL, 0.1)


def _at(step: int, schedule: LrScheduler) -> float:
    return lr_multiplier(step, schedule=schedule, total_steps=TOTAL, warmup_steps=WARMUP)


def test_warmup_rises_linearly_to_the_peak() -> None:
    schedule = LrScheduler(type=LrSchedulerType.LINEAR)
    assert WARMUP == 12
    rising = [_at(step, schedule) for step in range(WARMUP + 1)]
    assert rising[0] == pytest.approx(1 / 13)
    assert rising == sorted(rising)
    assert _at(WARMUP, schedule) == 1.0  # warmup ends at the peak


@pytest.mark.parametrize(
    ("kind", "min_lr_ratio", "mid", "end"),
    [
        (LrSchedulerType.LINEAR, 0.0, 0.5, 0.0),
        (LrSchedulerType.LINEAR, 0.1, 0.55, 0.1),
        (LrSchedulerType.COSINE, 0.0, 0.5, 0.0),
        (LrSchedulerType.COSINE, 0.2, 0.6, 0.2),
        (LrSchedulerType.CONSTANT, 0.0, 1.0, 1.0),
    ],
)
def test_values_at_warmup_end_middle_and_end(
    kind: LrSchedulerType, min_lr_ratio: float, mid: float, end: float
) -> None:
    schedule = LrScheduler(type=kind, min_lr_ratio=min_lr_ratio)
    middle = (WARMUP + TOTAL - 1) // 2
    assert _at(WARMUP, schedule) == pytest.approx(1.0)
    assert _at(middle, schedule) == pytest.approx(mid)
    assert _at(TOTAL - 1, schedule) == pytest.approx(end)


def test_cosine_cycles() -> None:
    one_cycle = LrScheduler(type=LrSchedulerType.COSINE, num_cycles=1.0, min_lr_ratio=0.0)
    middle = (WARMUP + TOTAL - 1) // 2
    # A whole cycle comes back up to the peak at the end, through the floor halfway.
    assert _at(middle, one_cycle) == pytest.approx(0.0, abs=1e-9)
    assert _at(TOTAL - 1, one_cycle) == pytest.approx(1.0)


def test_the_optimizer_sees_the_schedule_times_the_peak() -> None:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=2e-4)
    schedule = LrScheduler(type=LrSchedulerType.COSINE, min_lr_ratio=0.1)
    scheduler = build_scheduler(optimizer, schedule=schedule, total_steps=TOTAL, warmup_ratio=0.1)
    seen = []
    for _ in range(TOTAL):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[WARMUP] == pytest.approx(2e-4)
    assert seen[-1] == pytest.approx(2e-5)
    assert min(seen[WARMUP:]) == pytest.approx(2e-5)
