"""The training loop: epochs of optimizer steps, each a few micro-batches, read top to bottom.

One optimizer step trains on `batchSize` examples (the effective batch) split into micro-batches
whose gradients accumulate. Its loss is the sum of the token losses of the whole step, on every
rank, divided by the number of label tokens of the whole step: the same number whether the step
ran as one micro-batch or eight, on one process or two.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ..context import Clock, DistInfo
from ..contract import Progress, TrainingHyperparameters
from ..data.packing import ModelBatch
from ..errors import ComputationFailed
from ..report import Reporter
from .accumulate import accumulate_step
from .checkpoint import CheckpointState, save_checkpoint
from .distributed import all_reduce_sum
from .evaluation import evaluate
from .precision import PrecisionPlan
from .steps import StepBatches


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
    timer: Callable[[], float] = time.perf_counter,
) -> LoopResult:
    """Train `hyperparameters.n_epochs` epochs of `epochs(epoch)` steps; report, evaluate, checkpoint."""
    result = LoopResult()
    world = dist_info.world_size
    eval_at = evenly_spaced(hyperparameters.n_evals, total_steps)
    checkpoint_at = evenly_spaced(hyperparameters.n_checkpoints, total_steps) if checkpoint_root else set()
    scaler = torch.amp.GradScaler(device.type) if precision.needs_grad_scaler else None
    has_validation = bool(all_reduce_sum(torch.tensor([len(validation)], dtype=torch.float64))[0])

    def report(progress: Progress) -> None:
        if dist_info.is_main:
            reporter.progress(progress)

    # One evaluation before the first step, so "eval loss fell" can be checked against it.
    if has_validation:
        eval_loss = evaluate(model, validation, precision=precision, device=device)
        result.eval_losses.append((0, eval_loss))
        report(Progress(step=0, total_steps=total_steps, epoch=0.0, eval_loss=eval_loss, heartbeat_time=clock()))

    model.train()
    for epoch in range(hyperparameters.n_epochs):
        steps = epochs(epoch)
        for step_in_epoch, step in enumerate(steps):
            started = timer()
            step_loss = accumulate_step(
                model, step, world_size=world, precision=precision, device=device, scaler=scaler
            )
            loss_value = float(all_reduce_sum(step_loss.reshape(1))[0]) / world
            if not math.isfinite(loss_value):
                raise ComputationFailed(
                    f"The training loss became {loss_value} at step {result.steps + 1} (epoch {epoch + 1}).",
                    reason="NonFiniteLoss",
                    field="hyperparameters.learningRate",
                    hint="Lower hyperparameters.learningRate or set hyperparameters.maxGradNorm (e.g. 1.0); "
                    "check the training data for empty or corrupt examples.",
                )

            learning_rate = _apply_gradients(
                model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, max_norm=hyperparameters.max_grad_norm
            )

            result.steps += 1
            result.losses.append(loss_value)
            result.trained_tokens += step.tokens
            result.training_seconds += timer() - started
            epoch_done = epoch + (step_in_epoch + 1) / len(steps)
            report(
                Progress(
                    step=result.steps,
                    total_steps=total_steps,
                    epoch=epoch_done,
                    loss=loss_value,
                    learning_rate=learning_rate,
                    tokens_per_second=result.tokens_per_second,
                    eta_seconds=int((total_steps - result.steps) * result.training_seconds / result.steps),
                    heartbeat_time=clock(),
                )
            )

            if has_validation and result.steps in eval_at:
                eval_loss = evaluate(model, validation, precision=precision, device=device)
                result.eval_losses.append((result.steps, eval_loss))
                report(
                    Progress(
                        step=result.steps,
                        total_steps=total_steps,
                        epoch=epoch_done,
                        loss=loss_value,
                        eval_loss=eval_loss,
                        learning_rate=learning_rate,
                        tokens_per_second=result.tokens_per_second,
                        heartbeat_time=clock(),
                    )
                )

            if checkpoint_root is not None and result.steps in checkpoint_at:
                epoch_ended = step_in_epoch + 1 == len(steps)
                state = CheckpointState(
                    step=result.steps,
                    epoch=epoch + 1 if epoch_ended else epoch,
                    step_in_epoch=0 if epoch_ended else step_in_epoch + 1,
                    total_steps=total_steps,
                    world_size=world,
                    lora=lora,
                )
                saved = save_checkpoint(
                    checkpoint_root,
                    state=state,
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    dist_info=dist_info,
                )
                result.checkpoints.append(saved)
    return result


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
