"""The training loop: epochs of optimizer steps, each a few micro-batches, read top to bottom.

One optimizer step trains on `batchSize` examples (the effective batch) split into micro-batches
whose gradients accumulate. Its loss is the sum of the token losses of the whole step, on every
rank, divided by the number of label tokens of the whole step: the same number whether the step
ran as one micro-batch or eight, on one process or two.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ..context import Clock, DistInfo
from ..contract import (
    RECENT_CHECKPOINTS,
    RECENT_EVALS,
    CheckpointReport,
    EvalReport,
    PreferenceProgress,
    Progress,
    TrainingHyperparameters,
)
from ..data.packing import ModelBatch
from ..errors import ComputationFailed
from ..preemption import Preemption, preempted
from ..report import Reporter
from .accumulate import accumulate_step
from .checkpoint import CheckpointMirror, CheckpointState
from .checkpoint_saves import CheckpointSaves
from .distributed import all_reduce_sum
from .evaluation import evaluate
from .gpu_stats import GpuStats
from .loss import summed_label_loss
from .micro_batch_loss import MicroBatchLoss
from .precision import PrecisionPlan
from .steps import StepBatches


def _no_step_metrics() -> PreferenceProgress | None:
    return None


@dataclass(frozen=True)
class Objective:
    """What a step minimises, and what else a run of it reports and keeps (SFT's token loss by default)."""

    loss: MicroBatchLoss = summed_label_loss
    eval_loss: MicroBatchLoss = summed_label_loss
    step_metrics: Callable[[], PreferenceProgress | None] = _no_step_metrics
    """Called once per step on every rank (it may all-reduce): the step's preference metrics."""
    checkpoint_attachments: tuple[tuple[str, Path], ...] = ()
    """Files every checkpoint carries (name, file)."""


SUPERVISED = Objective()
"""SFT: the token loss, no extra metrics, nothing attached to checkpoints."""


class Epoch(Protocol):
    """An epoch's optimizer steps: counted up front, produced one at a time."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[StepBatches]: ...


@dataclass
class LoopResult:
    steps: int = 0
    losses: list[float] = field(default_factory=list)
    eval_losses: list[tuple[int, float]] = field(default_factory=list)
    """(step, eval loss); step 0 is the evaluation before training."""
    trained_tokens: int = 0
    training_seconds: float = 0.0
    checkpoints: list[Path] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.trained_tokens / self.training_seconds if self.training_seconds > 0 else 0.0

    def record(self, loss: float, *, tokens: int, seconds: float) -> None:
        self.steps += 1
        self.losses.append(loss)
        self.trained_tokens += tokens
        self.training_seconds += seconds

    @classmethod
    def resumed(cls, start: CheckpointState) -> LoopResult:
        """The tallies of a run as its checkpoint left them (losses before it are not kept)."""
        return cls(
            steps=start.step,
            eval_losses=list(start.eval_losses),
            trained_tokens=start.trained_tokens,
            training_seconds=start.training_seconds,
        )


@dataclass(frozen=True)
class _Positions:
    """What a checkpoint records about where training stands, from the loop's counters."""

    total_steps: int
    world_size: int
    lora: bool

    def after(self, result: LoopResult, *, epoch: int, done_in_epoch: int, epoch_steps: int) -> CheckpointState:
        epoch_ended = done_in_epoch == epoch_steps
        return CheckpointState(
            step=result.steps,
            epoch=epoch + 1 if epoch_ended else epoch,
            step_in_epoch=0 if epoch_ended else done_in_epoch,
            total_steps=self.total_steps,
            world_size=self.world_size,
            lora=self.lora,
            eval_losses=result.eval_losses,
            trained_tokens=result.trained_tokens,
            training_seconds=result.training_seconds,
        )


def evenly_spaced(count: int, total: int) -> set[int]:
    """`count` step numbers spread over 1..total, the last one at `total`."""
    if count <= 0 or total <= 0:
        return set()
    return {max(1, round(total * k / count)) for k in range(1, count + 1)}


def train(
    model: nn.Module,
    *,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    epochs: Callable[[int], Epoch],
    total_steps: int,
    validation: list[ModelBatch],
    hyperparameters: TrainingHyperparameters,
    precision: PrecisionPlan,
    device: torch.device,
    dist_info: DistInfo,
    reporter: Reporter,
    clock: Clock,
    checkpoint_root: Path | None,
    lora: bool,
    start: CheckpointState | None = None,
    preemption: Preemption | None = None,
    on_checkpoint: Callable[[int], None] = lambda step: None,
    timer: Callable[[], float] = time.perf_counter,
    unwatched: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    objective: Objective = SUPERVISED,
    mirror: CheckpointMirror | None = None,
    gpu_stats: GpuStats | None = None,
) -> LoopResult:
    """Train `hyperparameters.n_epochs` epochs of `epochs(epoch)` steps; report, evaluate, checkpoint.

    `start` is the position of a checkpoint this run resumed from (weights, optimizer, schedule
    and RNG already loaded): `epochs(start.epoch)` then yields only the steps from
    `start.step_in_epoch` on, and the evaluation and checkpoint schedule goes on as if the run
    had never stopped. A SIGTERM recorded by `preemption` ends the run at the next step
    boundary, after a checkpoint if its budget allows one. Evaluations and checkpoint saves run
    inside `unwatched()` (the step watchdog's pause: they are not steps). `objective` is what a
    step minimises (default: the token loss of SFT).
    """
    result = LoopResult.resumed(start) if start is not None else LoopResult()
    world = dist_info.world_size
    eval_at = evenly_spaced(hyperparameters.n_evals, total_steps)
    checkpoint_at = evenly_spaced(hyperparameters.n_checkpoints, total_steps) if checkpoint_root else set()
    scaler = torch.amp.GradScaler(device.type) if precision.needs_grad_scaler else None
    has_validation = bool(all_reduce_sum(torch.tensor([len(validation)], dtype=torch.float64))[0])
    positions = _Positions(total_steps=total_steps, world_size=world, lora=lora)
    saves = CheckpointSaves(
        root=checkpoint_root,
        dist_info=dist_info,
        timer=timer,
        on_checkpoint=on_checkpoint,
        unwatched=unwatched,
        attachments=dict(objective.checkpoint_attachments),
        mirror=mirror,
    )
    # The heartbeat is the time of the last completed step; before the first one, the loop's start.
    last_step_at = clock()

    report = _RankZeroReport(reporter, is_main=dist_info.is_main, clock=clock)

    if start is not None:
        # The evaluation before training ran in the first attempt; show where this one starts.
        saves.newest = start.step
        report(
            Progress(
                step=start.step,
                total_steps=total_steps,
                epoch=start.step * hyperparameters.n_epochs / max(total_steps, 1),
                eval_loss=start.eval_losses[-1][1] if start.eval_losses else None,
                heartbeat_time=last_step_at,
            )
        )
    elif has_validation:
        # One evaluation before the first step, so "eval loss fell" can be checked against it.
        eval_loss = _evaluate(
            model, validation, precision=precision, device=device, unwatched=unwatched, loss=objective.eval_loss
        )
        before = Progress(step=0, total_steps=total_steps, epoch=0.0, heartbeat_time=last_step_at)
        report(report.evaluated(0, eval_loss, into=result.eval_losses, progress=before))

    model.train()
    first_epoch = start.epoch if start is not None else 0
    with preemption.deferred() if preemption is not None else contextlib.nullcontext():
        for epoch in range(first_epoch, hyperparameters.n_epochs):
            steps = epochs(epoch)
            first = start.step_in_epoch if start is not None and epoch == start.epoch else 0
            for step_in_epoch, step in enumerate(steps, start=first):
                started = timer()
                step_loss = accumulate_step(
                    model,
                    step,
                    world_size=world,
                    precision=precision,
                    device=device,
                    scaler=scaler,
                    micro_batch_loss=objective.loss,
                )
                loss_value, signalled = _agree(step_loss, world_size=world, preemption=preemption)
                if not math.isfinite(loss_value):
                    raise ComputationFailed(
                        f"The training loss became {loss_value} at step {result.steps + 1} (epoch {epoch + 1}).",
                        reason="NonFiniteLoss",
                        field="hyperparameters.learningRate",
                        hint="Lower hyperparameters.learningRate or set hyperparameters.maxGradNorm (e.g. 1.0); "
                        "check the training data for empty or corrupt examples.",
                    )

                learning_rate = _apply_gradients(
                    model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    scaler=scaler,
                    max_norm=hyperparameters.max_grad_norm,
                )

                result.record(loss_value, tokens=step.tokens, seconds=timer() - started)
                last_step_at = clock()
                epoch_done = epoch + (step_in_epoch + 1) / len(steps)
                progress = Progress(
                    step=result.steps,
                    total_steps=total_steps,
                    epoch=epoch_done,
                    loss=loss_value,
                    learning_rate=learning_rate,
                    tokens_per_second=result.tokens_per_second,
                    eta_seconds=int((total_steps - result.steps) * result.training_seconds / result.steps),
                    heartbeat_time=last_step_at,
                    preference=objective.step_metrics(),
                    peak_gpu_memory_bytes=gpu_stats.peak_memory_bytes() if gpu_stats else None,
                    mfu=gpu_stats.mfu(result.tokens_per_second) if gpu_stats else None,
                )
                report(progress)

                if signalled:
                    assert preemption is not None  # only a Preemption raises the flag
                    saves.before_leaving(
                        positions.after(result, epoch=epoch, done_in_epoch=step_in_epoch + 1, epoch_steps=len(steps)),
                        model=model,
                        optimizer=optimizer,
                        scheduler=scheduler,
                        remaining_seconds=preemption.remaining_seconds(),
                    )
                    result.checkpoints = saves.written
                    # Reported like a scheduled save, so the operator lists it (a cancel, a preemption).
                    report.checkpoint_if_saved(saves.newest, progress)
                    raise preempted(f"training stopped after step {result.steps}; {saves.describe()}")

                if has_validation and result.steps in eval_at:
                    eval_loss = _evaluate(
                        model,
                        validation,
                        precision=precision,
                        device=device,
                        unwatched=unwatched,
                        loss=objective.eval_loss,
                    )
                    # The step's report again, with its eval loss (and no ETA: the evaluation's time is not a step's).
                    progress = report.evaluated(result.steps, eval_loss, into=result.eval_losses, progress=progress)
                    report(progress.model_copy(update={"eta_seconds": None}))

                if result.steps in checkpoint_at:
                    saves.save(
                        positions.after(result, epoch=epoch, done_in_epoch=step_in_epoch + 1, epoch_steps=len(steps)),
                        model=model,
                        optimizer=optimizer,
                        scheduler=scheduler,
                    )
                    report.checkpoint_if_saved(saves.newest, progress)
    result.checkpoints = saves.written
    if preemption is not None and preemption.requested:
        # SIGTERM after the last step's boundary: the final checkpoint is written, the output is not.
        raise preempted(f"training had finished all {result.steps} steps; {saves.describe()}")
    return result


class _RankZeroReport:
    """Rank 0's progress reports, each carrying the run's newest checkpoints and evaluations: a
    rate-limited reporter that drops intermediate reports never drops those (the operator lists
    them from `recentCheckpoints` and `recentEvals`). Other ranks report nothing."""

    def __init__(self, reporter: Reporter, *, is_main: bool, clock: Clock) -> None:
        self._reporter, self._is_main, self._clock = reporter, is_main, clock
        self.checkpoints: list[CheckpointReport] = []
        self.evals: list[EvalReport] = []

    def __call__(self, progress: Progress) -> None:
        if self._is_main:
            update = {"recent_checkpoints": list(self.checkpoints), "recent_evals": list(self.evals)}
            self._reporter.progress(progress.model_copy(update=update))

    def evaluated(self, step: int, eval_loss: float, *, into: list[tuple[int, float]], progress: Progress) -> Progress:
        """Remember an evaluation (and append it to the run's losses `into`); `progress` with its eval loss."""
        into.append((step, eval_loss))
        self.evals = [*self.evals, EvalReport(step=step, eval_loss=eval_loss, time=self._clock())][-RECENT_EVALS:]
        return progress.model_copy(update={"eval_loss": eval_loss})

    def checkpoint_if_saved(self, newest: int | None, progress: Progress) -> None:
        """Report `progress` with its checkpoint when the newest complete checkpoint is of its step."""
        if newest == progress.step:
            self(self.saved(progress))

    def saved(self, progress: Progress) -> Progress:
        """Remember that the checkpoint of `progress`'s step is complete; `progress` to report it with (no ETA)."""
        saved = CheckpointReport(
            step=progress.step,
            epoch=progress.epoch,
            train_loss=progress.loss,
            eval_loss=progress.eval_loss,
            time=self._clock(),
        )
        self.checkpoints = [*self.checkpoints, saved][-RECENT_CHECKPOINTS:]
        return progress.model_copy(update={"eta_seconds": None})


def _evaluate(
    model: nn.Module,
    validation: list[ModelBatch],
    *,
    precision: PrecisionPlan,
    device: torch.device,
    unwatched: Callable[[], AbstractContextManager[None]],
    loss: MicroBatchLoss,
) -> float:
    """The eval loss, with the step watchdog paused: an evaluation is not a step."""
    with unwatched():
        return evaluate(model, validation, precision=precision, device=device, loss=loss)


def _agree(step_loss: torch.Tensor, *, world_size: int, preemption: Preemption | None) -> tuple[float, bool]:
    """The step's loss over all ranks, and whether any rank was sent SIGTERM: one all-reduce for both."""
    signalled = 1.0 if preemption is not None and preemption.requested else 0.0
    flag = torch.tensor(signalled, dtype=torch.float64, device=step_loss.device)
    tallies = all_reduce_sum(torch.stack([step_loss.reshape(()).double(), flag]))
    return float(tallies[0]) / world_size, float(tallies[1]) > 0


def _apply_gradients(
    model: nn.Module,
    *,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    scaler: torch.amp.GradScaler | None,
    max_norm: float,
) -> float:
    """Clip, step the optimizer and the schedule, clear gradients; returns the learning rate used."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    learning_rate = float(scheduler.get_last_lr()[0])
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return learning_rate
