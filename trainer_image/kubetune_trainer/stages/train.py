"""Training: plan the steps, build optimizer and schedule, run the loop, keep the metrics."""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath

import torch

from ..context import RunContext
from ..data import TRAINING_FIELD
from ..errors import InvalidInput
from ..training.loop import train
from ..training.optim import build_optimizer
from ..training.schedule import build_scheduler
from ..training.setup import TrainingSetup
from ..training.steps import BatchingPlan, EpochSteps, steps_per_epoch, validation_batches

GPU_TOKEN_BUDGET = 16384
"""Tokens per micro-batch on a GPU: large matmuls keep it busy; gradient accumulation covers the rest."""


def token_budget(max_seq_length: int, *, device: torch.device) -> int:
    """Most tokens in one micro-batch; never below the longest example.

    On a CPU the attention over a packed row grows with the row's square while the matmuls are
    already efficient at a few hundred tokens, so one sequence-length's worth is fastest
    (measured in docs/training.md); a GPU wants bigger micro-batches.
    """
    if device.type == "cuda":
        return max(max_seq_length, GPU_TOKEN_BUDGET)
    return max_seq_length


def run(ctx: RunContext) -> None:
    setup = ctx.training_state
    if ctx.model is None or not isinstance(setup, TrainingSetup) or ctx.max_seq_length is None:
        raise RuntimeError("Training needs the model from Initialization and the examples from DataDownload")
    hyperparameters = ctx.config.hyperparameters
    resume_from = ctx.config.runtime.resume_from
    if resume_from is not None:
        # Checkpoints are written, but no loader exists yet (docs/architecture.md): say so rather
        # than let a fromCheckpoint job or a retry look like it continued.
        ctx.warn(
            "ResumeNotImplemented",
            f"fromCheckpoint / retry checkpoint {resume_from} is not loaded: this attempt trains from the base "
            f"model {ctx.config.model.repo}, starting at step 0",
        )
    plan = BatchingPlan(
        examples_per_step=hyperparameters.batch_size,
        token_budget=token_budget(ctx.max_seq_length, device=setup.device),
        packing=hyperparameters.packing,
        pad_token_id=_pad_token_id(ctx.tokenizer),
        seed=hyperparameters.seed,
        rank=ctx.dist.rank,
        world_size=ctx.dist.world_size,
    )
    _check_every_rank_has_data(
        len(ctx.train_examples), batch_size=hyperparameters.batch_size, world=ctx.dist.world_size
    )
    total_steps = steps_per_epoch(len(ctx.train_examples), plan=plan) * hyperparameters.n_epochs
    ctx.total_steps = total_steps
    optimizer = build_optimizer(
        ctx.model, learning_rate=hyperparameters.learning_rate, weight_decay=hyperparameters.weight_decay
    )
    scheduler = build_scheduler(
        optimizer,
        schedule=hyperparameters.lr_scheduler,
        total_steps=total_steps,
        warmup_ratio=hyperparameters.warmup_ratio,
    )
    result = train(
        ctx.model,
        optimizer=optimizer,
        scheduler=scheduler,
        epochs=lambda epoch: EpochSteps(ctx.train_examples, plan=plan, epoch=epoch),
        total_steps=total_steps,
        validation=validation_batches(ctx.validation_examples, plan=plan),
        hyperparameters=hyperparameters,
        precision=setup.precision,
        device=setup.device,
        dist_info=ctx.dist,
        reporter=ctx.reporter,
        clock=ctx.clock,
        checkpoint_root=checkpoint_root(ctx),
        lora=setup.lora,
    )
    ctx.metrics.update(
        steps=float(result.steps),
        trained_tokens=float(result.trained_tokens),
        tokens_per_second=result.tokens_per_second,
        train_loss=result.losses[-1] if result.losses else math.nan,
    )
    if result.eval_losses:
        ctx.metrics["eval_loss_before"] = result.eval_losses[0][1]
        last_step, last_loss = result.eval_losses[-1]
        if last_step > 0:  # with nEvals 0 only the evaluation before training ran: no eval loss after it
            ctx.metrics["eval_loss"] = last_loss
    if result.checkpoints:
        ctx.checkpoint_step = result.steps


def _check_every_rank_has_data(examples: int, *, batch_size: int, world: int) -> None:
    """Each optimizer step gives every process at least one example; refuse what cannot."""
    if batch_size < world:
        raise InvalidInput(
            f"hyperparameters.batchSize {batch_size} is smaller than the {world} training processes: "
            "every process needs at least one example per optimizer step.",
            reason="BatchSizeBelowWorldSize",
            field="hyperparameters.batchSize",
            hint=f"Set hyperparameters.batchSize to {world} or more, or run fewer processes.",
        )
    if examples < world:
        # Otherwise the epoch has no step at all and an untrained model would be saved as trained.
        raise InvalidInput(
            f"{TRAINING_FIELD} has {examples} usable example(s), fewer than the {world} training processes.",
            reason="TooFewExamples",
            field=TRAINING_FIELD,
            hint=f"Give {TRAINING_FIELD} at least {world} examples with a token to train on, or run fewer processes.",
        )


def checkpoint_root(ctx: RunContext) -> Path:
    """Where checkpoints are written: the job's checkpoint location when it is a filesystem path.

    A local path, `file://` or `pvc://claim/path` (the claim mounted under `data.pvcMountRoot`)
    is written directly. Without a location, or for an object store (`s3://`), checkpoints stay
    in the work directory; copying them out is not done here.
    """
    uri = ctx.config.runtime.checkpoint_uri
    if uri is None:
        return ctx.paths.checkpoints
    if uri.startswith("pvc://"):
        claim, _, inside = uri.removeprefix("pvc://").partition("/")
        if not claim or ".." in PurePosixPath(inside).parts:
            raise InvalidInput(
                f"The checkpoint location {uri!r} is not a claim and a path inside it.",
                reason="InvalidCheckpointUri",
                field="checkpoint.uri",
                hint="Write it as pvc://<claim>/<path>, with no '..' in the path.",
            )
        return Path(ctx.config.data.pvc_mount_root) / claim / inside
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    if "://" not in uri:
        return Path(uri)
    return ctx.paths.checkpoints


def _pad_token_id(tokenizer: object) -> int:
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    return 0
