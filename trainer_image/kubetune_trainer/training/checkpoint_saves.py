"""The run's checkpoints as the loop takes them: on schedule and, budget permitting, before a preemption.

`save_checkpoint` writes one; this keeps what the loop needs around it: the newest step saved
(a preemption right after a scheduled save writes nothing more), the slowest save so far (the
estimate a SIGTERM's remaining budget is weighed against), and the hook that tells the stage
about every checkpoint (the Result's step).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ..context import DistInfo
from .checkpoint import CheckpointMirror, CheckpointState, save_checkpoint
from .distributed import all_reduce_sum


@dataclass
class CheckpointSaves:
    """The run's checkpoints: written on schedule and, budget permitting, before a preemption ends it."""

    root: Path | None
    dist_info: DistInfo
    timer: Callable[[], float]
    on_checkpoint: Callable[[int], None]
    unwatched: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext
    """The step watchdog's pause: a save (and its copy to an object store) is not a step."""
    attachments: dict[str, Path] = field(default_factory=dict)
    """Files every checkpoint carries (name -> file), e.g. DPO's reference log-probabilities."""
    mirror: CheckpointMirror | None = None
    """Where every rank copies its files as they are written (an s3:// location); None: local only."""
    newest: int | None = None
    slowest_seconds: float = 0.0
    written: list[Path] = field(default_factory=list)

    def save(self, state: CheckpointState, *, model: nn.Module, optimizer: Optimizer, scheduler: LRScheduler) -> None:
        if self.root is None:
            return
        with self.unwatched():
            started = self.timer()
            saved = save_checkpoint(
                self.root,
                state=state,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                dist_info=self.dist_info,
                attachments=self.attachments,
                mirror=self.mirror,
            )
            self.slowest_seconds = max(self.slowest_seconds, self.timer() - started)
            self.written.append(saved.directory)
            self.newest = state.step
            self.on_checkpoint(state.step)

    def before_leaving(
        self,
        state: CheckpointState,
        *,
        model: nn.Module,
        optimizer: Optimizer,
        scheduler: LRScheduler,
        remaining_seconds: float,
    ) -> None:
        """Checkpoint `state` unless it is saved already or rank 0 expects the budget to run out first."""
        if self.root is None or self.newest == state.step:
            return
        # Saving is a collective: every rank follows rank 0's estimate (1.5 x the slowest save so far).
        fits = 1.0 if remaining_seconds > 1.5 * self.slowest_seconds else 0.0
        decision = torch.tensor([fits if self.dist_info.is_main else 0.0], dtype=torch.float64)
        if float(all_reduce_sum(decision)[0]) > 0:
            self.save(state, model=model, optimizer=optimizer, scheduler=scheduler)

    def describe(self) -> str:
        if self.newest is None:
            return "no checkpoint was written, so the retry starts over"
        return f"the retry resumes from the checkpoint of step {self.newest}"
