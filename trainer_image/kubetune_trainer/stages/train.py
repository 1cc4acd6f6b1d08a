"""Training: plan the steps, build optimizer and schedule, resume from a checkpoint, run the loop.

`runtime.resumeFrom` names a checkpoint, `<job>` (its newest complete one) or `<job>:<step>`:

- this job's own (a retry): an exact resume. Weights, optimizer, schedule, every rank's RNG and
  the data position are restored, and the run goes on as if it had never stopped;
- another job's (`fromCheckpoint`): its weights (or LoRA adapter) are the starting point of a
  new run, which starts at step 0 with a fresh optimizer and schedule.

A retry of a `fromCheckpoint` job whose own job has no checkpoint yet starts from the
fromCheckpoint weights again (`runtime.fromCheckpoint`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ..context import RunContext
from ..contract import TrainingPerformance
from ..data import TRAINING_FIELD
from ..errors import CheckpointInvalid, InvalidInput
from ..handoffs import DownloadResult, InitializedRun, PreferenceSplits, SupervisedSplits, TrainingOutcome
from ..storage import S3Settings
from ..training.checkpoint import CheckpointState, checkpoint_dir
from ..training.checkpoint_location import (
    RESUME_FIELD,
    CheckpointModel,
    CheckpointPlace,
    ResumeReference,
    job_checkpoints,
    sole_uid,
)
from ..training.distributed import barrier
from ..training.gpu_stats import GpuStats
from ..training.loop import SUPERVISED, train
from ..training.memory_plan import plan_memory, report_of
from ..training.optim import build_optimizer
from ..training.preference_setup import preference_objective
from ..training.remote import S3Mirror, fetch_checkpoint
from ..training.resume import agreed_checkpoint, load_training_state, load_weights, read_state
from ..training.resumed_epoch import epoch_steps
from ..training.schedule import build_scheduler
from ..training.steps import BatchingPlan, steps_per_epoch, validation_batches

log = logging.getLogger(__name__)


def run(ctx: RunContext, downloaded: DownloadResult, initialized: InitializedRun) -> TrainingOutcome:
    model, setup, examples = initialized.model, initialized.setup, downloaded.examples
    hyperparameters = ctx.config.hyperparameters
    # A rank without an example would wait for the others forever: refused before anything is planned.
    _check_every_rank_has_data(len(examples.train), batch_size=hyperparameters.batch_size, world=ctx.dist.world_size)
    # The micro-batch budget from the device's free memory (on a CPU: one maxSeqLength).
    memory = plan_memory(
        model,
        runtime=ctx.config.runtime,
        lora_rank=ctx.config.lora.r if ctx.config.lora is not None else None,
        max_seq_length=downloaded.max_seq_length,
        device=setup.device,
        world_size=ctx.dist.world_size,
        lora_dropout=ctx.config.lora is not None and ctx.config.lora.dropout > 0,
    )
    ctx.journal.memory_plan = report_of(memory)
    plan = BatchingPlan(
        examples_per_step=hyperparameters.batch_size,
        token_budget=memory.token_budget,
        packing=hyperparameters.packing and isinstance(examples, SupervisedSplits),  # pairs are padded, never packed
        pad_token_id=_pad_token_id(downloaded.tokenizer),
        seed=hyperparameters.seed,
        rank=ctx.dist.rank,
        world_size=ctx.dist.world_size,
    )
    total_steps = steps_per_epoch(len(examples.train), plan=plan) * hyperparameters.n_epochs
    optimizer = build_optimizer(
        model,
        learning_rate=hyperparameters.learning_rate,
        weight_decay=hyperparameters.weight_decay,
        master_weights=ctx.config.runtime.master_weights,
    )
    scheduler = build_scheduler(
        optimizer,
        schedule=hyperparameters.lr_scheduler,
        total_steps=total_steps,
        warmup_ratio=hyperparameters.warmup_ratio,
    )
    unwatched = ctx.step_watchdog.paused if ctx.step_watchdog is not None else contextlib.nullcontext
    # Fetching a large checkpoint from a store and hashing every file is no step either.
    with unwatched():
        loaded = start_from_checkpoint(
            ctx,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            lora=setup.lora,
            total_steps=total_steps,
            revision_sha=downloaded.model.revision_sha,
        )
    start = loaded.resume if loaded is not None else None

    own = own_checkpoints(ctx)
    mirror = S3Mirror(own.remote, S3Settings.from_env(ctx.environ)) if own.remote is not None else None
    if ctx.dist.is_main and kept_model_place(ctx) is not None:
        # Which model these checkpoints continue, for a job that starts from them (fromCheckpoint).
        record = CheckpointModel(repo=ctx.config.model.repo, revision_sha=downloaded.model.revision_sha).write(
            own.local
        )
        if mirror is not None:
            with unwatched():  # a PUT to the store is no step
                mirror.put_beside(record)
    preference = None
    if isinstance(examples, PreferenceSplits):
        dpo = hyperparameters.dpo
        if dpo is None:
            raise ValueError("trainingMethod dpo without its settings (hyperparameters.dpo): the config is malformed")
        with unwatched():  # the reference pass is no step
            preference = preference_objective(
                model,
                settings=dpo,
                train_pairs=examples.train,
                validation_pairs=examples.validation,
                lora=setup.lora,
                pad_token_id=plan.pad_token_id,
                precision=setup.precision,
                device=setup.device,
                dist_info=ctx.dist,
                work_dir=ctx.paths.root,
                resumed_checkpoint=checkpoint_dir(own.local, start.step) if start is not None else None,
            )
    gpu_stats = GpuStats.for_run(model, device=setup.device, world_size=ctx.dist.world_size)

    def on_checkpoint(step: int) -> None:
        ctx.journal.checkpoint_step = step

    result = train(
        model,
        optimizer=optimizer,
        scheduler=scheduler,
        epochs=lambda epoch: epoch_steps(
            examples.train,
            plan=plan,
            epoch=epoch,
            start=start.step_in_epoch if start is not None and epoch == start.epoch else 0,
        ),
        total_steps=total_steps,
        validation=validation_batches(examples.validation, plan=plan),
        hyperparameters=hyperparameters,
        precision=setup.precision,
        device=setup.device,
        dist_info=ctx.dist,
        reporter=ctx.reporter,
        clock=ctx.clock,
        checkpoint_root=own.local,
        lora=setup.lora,
        start=start,
        preemption=ctx.preemption,
        on_checkpoint=on_checkpoint,
        unwatched=unwatched,
        objective=preference.objective if preference is not None else SUPERVISED,
        mirror=mirror,
        gpu_stats=gpu_stats,
    )
    kernels = initialized.kernels
    ctx.journal.performance = TrainingPerformance(
        attention=kernels.attention,
        compiled=kernels.compiled,
        device=kernels.device,
        tokens_per_second=result.tokens_per_second,
        peak_gpu_memory_bytes=gpu_stats.peak_memory_bytes(),
        mfu=gpu_stats.mfu(result.tokens_per_second),
    )
    metrics = {
        "steps": float(result.steps),
        "trained_tokens": float(result.trained_tokens),
        "tokens_per_second": result.tokens_per_second,
        "train_loss": result.losses[-1] if result.losses else math.nan,
    }
    if preference is not None:  # over the last epoch: what the model learnt to prefer by the end
        metrics.update(preference.summary(last_steps=total_steps // max(hyperparameters.n_epochs, 1)))
    if result.eval_losses:
        metrics["eval_loss_before"] = result.eval_losses[0][1]
        last_step, last_loss = result.eval_losses[-1]
        if last_step > 0:  # with nEvals 0 only the evaluation before training ran: no eval loss after it
            metrics["eval_loss"] = last_loss
    return TrainingOutcome(
        total_steps=total_steps,
        metrics=metrics,
        resumed_from_step=loaded.step if loaded is not None else None,
    )


@dataclass(frozen=True)
class LoadedCheckpoint:
    """The checkpoint training starts from: its step, and where to resume (None: another job's weights, step 0)."""

    step: int
    resume: CheckpointState | None


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


def own_checkpoints(ctx: RunContext) -> CheckpointPlace:
    """This job's checkpoint directory, its uid's (`training.checkpoint_location` says where)."""
    return _checkpoints_of(ctx, ResumeReference(job=ctx.config.job.name, uid=ctx.config.job.uid))


def kept_model_place(ctx: RunContext) -> CheckpointPlace | None:
    """Where this job keeps its saved model for a retry (`saved_output`): beside its checkpoints, wherever they
    outlive the pod (a filesystem or an object store); None without a checkpoint location."""
    runtime = ctx.config.runtime
    if runtime.checkpoint_uri is None and runtime.checkpoint_root is None:
        return None  # the work directory does not outlive the pod
    return own_checkpoints(ctx)


def _own(ctx: RunContext, reference: ResumeReference) -> bool:
    job = ctx.config.job
    return reference.job == job.name and reference.uid in (None, job.uid)


def _checkpoints_of(ctx: RunContext, reference: ResumeReference) -> CheckpointPlace:
    # This job's own are always its uid's: a job that had its name before never lends it checkpoints.
    uid = ctx.config.job.uid if _own(ctx, reference) else reference.uid
    place = job_checkpoints(
        ctx.config.runtime.checkpoint_uri,
        job=reference.job,
        own_job=ctx.config.job.name,
        work_checkpoints=ctx.paths.checkpoints,
        pvc_mount_root=ctx.config.data.pvc_mount_root,
        root=ctx.config.runtime.checkpoint_root,
        uid=uid,
    )
    if uid is None and place.remote is None and (only := sole_uid(place.local)) is not None:
        return CheckpointPlace(local=place.local / only)
    return place


def start_from_checkpoint(
    ctx: RunContext,
    *,
    model: nn.Module,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    lora: bool,
    total_steps: int,
    revision_sha: str,
) -> LoadedCheckpoint | None:
    """Load what `runtime.resumeFrom` names (None: nothing to load, start at step 0).

    `revision_sha` is the commit of the model this job loads: another job's checkpoints must continue it.
    """
    runtime = ctx.config.runtime
    if runtime.resume_from is None:
        return None
    reference = ResumeReference.parse(runtime.resume_from)
    directory = _find(ctx, reference)
    if directory is None and _own(ctx, reference) and runtime.from_checkpoint is not None:
        # A fromCheckpoint job stopped before its first checkpoint starts from fromCheckpoint again.
        reference = ResumeReference.parse(runtime.from_checkpoint)
        directory = _find(ctx, reference)
    own = _own(ctx, reference)
    if directory is None:
        if not own:
            raise InvalidInput(
                f"{RESUME_FIELD} {reference}: job {reference.job} has no complete checkpoint under "
                f"{_checkpoints_of(ctx, reference).local}.",
                reason="CheckpointNotFound",
                field=RESUME_FIELD,
                hint="Name a job that wrote checkpoints to the same checkpoint location as this one.",
            )
        log.warning("no complete checkpoint of %s yet: training starts at step 0", reference.job)
        return None
    if not own:
        check_same_model(ctx, directory.parent, reference=reference, revision_sha=revision_sha)
    state = read_state(directory)
    load_weights(directory, model=model, state=state, lora=lora)
    ctx.journal.resumed_from_step = state.step
    if not own:
        log.warning("starting from the weights of %s step %d; training starts at step 0", reference.job, state.step)
        return LoadedCheckpoint(step=state.step, resume=None)
    _check_same_run(
        state,
        world_size=ctx.dist.world_size,
        total_steps=total_steps,
        directory=directory,
        reshard=runtime.reshard_on_resume,
    )
    load_training_state(directory, model=model, optimizer=optimizer, scheduler=scheduler, dist_info=ctx.dist)
    ctx.journal.checkpoint_step = state.step
    log.warning("resumed from %s: step %d of %d", directory, state.step, total_steps)
    return LoadedCheckpoint(step=state.step, resume=state)


def _find(ctx: RunContext, reference: ResumeReference) -> Path | None:
    place = _checkpoints_of(ctx, reference)
    if place.remote is not None:
        # One copy per node (the work directory is the node's own); the others wait for it.
        if ctx.dist.local_rank == 0:
            fetch_checkpoint(
                place.local, remote=place.remote, step=reference.step, settings=S3Settings.from_env(ctx.environ)
            )
        barrier()
    return agreed_checkpoint(place.local, step=reference.step, reference=str(reference), dist_info=ctx.dist)


def check_same_model(ctx: RunContext, job_dir: Path, *, reference: ResumeReference, revision_sha: str) -> None:
    """Another job's checkpoints continue only the model they were trained from: its repo at its commit.

    `revision_sha` is the commit this job loads (DataDownload's).
    """
    trained = CheckpointModel.read(job_dir)
    if trained is None:
        return  # written before models were recorded: the operator's record named the source's model
    wanted = CheckpointModel(repo=ctx.config.model.repo, revision_sha=revision_sha)
    same_sha = (
        trained.revision_sha is None or wanted.revision_sha is None or trained.revision_sha == wanted.revision_sha
    )
    if trained.repo != wanted.repo or not same_sha:
        raise InvalidInput(
            f"{RESUME_FIELD} {reference}: its checkpoints continue {trained.repo}@{trained.revision_sha}, "
            f"but this job loads {wanted.repo}@{wanted.revision_sha}.",
            reason="CheckpointModelMismatch",
            field=RESUME_FIELD,
            hint="Start from a checkpoint of the same model (a job created by the operator takes the source "
            "job's repo and commit by itself), or train the other model from its hub repo.",
        )


def _check_same_run(
    state: CheckpointState, *, world_size: int, total_steps: int, directory: Path, reshard: bool
) -> None:
    """An exact resume needs the same steps: the planner's steps depend on the data and the hyperparameters.

    The examples of each step do not depend on the world size (batchSize is the effective batch),
    so another world size resumes exactly by resharding the checkpoint, unless that is switched off.
    """
    if state.world_size != world_size and not reshard:
        raise CheckpointInvalid(
            f"The checkpoint {directory} was written by {state.world_size} process(es), this run has {world_size}, "
            "and runtime.reshardOnResume is off.",
            reason="ResumeWorldSizeChanged",
            field=RESUME_FIELD,
            hint=f"Resume with {state.world_size} processes (nodes x GPUs per node), or turn reshardOnResume on.",
        )
    if state.total_steps != total_steps:
        changed = (
            f" With {world_size} processes instead of {state.world_size}, a last step with fewer examples than "
            "processes is dropped, which changed the count."
            if state.world_size != world_size
            else ""
        )
        raise CheckpointInvalid(
            f"The checkpoint {directory} belongs to a run of {state.total_steps} steps, this run has {total_steps}: "
            f"the training data, hyperparameters or process count changed.{changed}",
            reason="ResumeRunChanged",
            field=RESUME_FIELD,
            hint="Resume with the same trainingFile, hyperparameters and process count, or start a new job with "
            "fromCheckpoint.",
        )
    if state.world_size != world_size:
        log.warning(
            "resharding the checkpoint of %d process(es) onto %d; the steps and their examples are the same",
            state.world_size,
            world_size,
        )


def _pad_token_id(tokenizer: object) -> int:
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    return 0
