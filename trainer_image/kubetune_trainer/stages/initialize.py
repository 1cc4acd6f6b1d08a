"""Initialization: seed, join the process group, load the model, add LoRA, wrap for DDP/FSDP."""

from __future__ import annotations

import logging

import torch

from ..context import RunContext
from ..contract import AttentionKernel, Strategy, TrainingPerformance
from ..faults import install_faults
from ..handoffs import DownloadResult, InitializedRun
from ..training.distributed import init_process_group, max_over_ranks, pick_device, unwrap
from ..training.fsdp_oom import install_fsdp_oom_agreement
from ..training.lora import left_out_message
from ..training.oom import MicroBatchReduction, OomPolicy, attach_oom_policy
from ..training.seeding import seed_everything
from ..training.setup import TrainingSetup, prepare_model

log = logging.getLogger(__name__)


def run(ctx: RunContext, downloaded: DownloadResult) -> InitializedRun:
    seed_everything(ctx.config.hyperparameters.seed)
    init_process_group(ctx.dist, device=pick_device(ctx.dist))
    model, setup = prepare_model(
        downloaded.model.path, runtime=ctx.config.runtime, lora=ctx.config.lora, dist_info=ctx.dist
    )
    kernels = announce_kernels(ctx, setup)

    def micro_batch_reduced(reduction: MicroBatchReduction) -> None:
        log.warning("%s", reduction.message())
        ctx.warn("MicroBatchReduced", reduction.message())
        if ctx.dist.is_main:
            ctx.reporter.note(reduction.message())

    auto_batch = ctx.config.hyperparameters.auto_batch_on_oom
    # Under FSDP the flag checks that let every rank retry together cost a collective per layer:
    # only when the job asked for retries in smaller micro-batches.
    sharded = ctx.config.runtime.strategy is Strategy.FSDP and ctx.dist.world_size > 1
    agreement = install_fsdp_oom_agreement(model) if auto_batch and sharded else None
    attach_oom_policy(
        model,
        OomPolicy(
            auto_batch=auto_batch,
            world_size=ctx.dist.world_size,
            on_reduced=micro_batch_reduced,
            agreed=not sharded or agreement is not None,
            max_over_ranks=max_over_ranks,
        ),
    )
    # Test-only (KUBETUNE_FAULT_INJECTION): nothing is installed unless a test set it. On the
    # model inside DDP, so a fault fires after DDP's own forward collectives, as a real OOM would;
    # after the FSDP agreement's hooks, so it fires in a unit's computation, after its all-gather.
    install_faults(unwrap(model), environ=ctx.environ, rank=ctx.dist.rank)
    return InitializedRun(model=model, setup=setup, kernels=kernels)


def announce_kernels(ctx: RunContext, setup: TrainingSetup) -> TrainingPerformance:
    """Log which attention kernel and compilation the run got; warn where the template's choice fell back, and
    where LoRA's all-linear left linear layers without an adapter."""
    attention, compiled = setup.attention, setup.compiled
    for line in (attention.message(), compiled.message()):
        log.info("%s", line)
        if ctx.dist.is_main:
            ctx.reporter.note(line)
    on_gpu_without_kernel = setup.device.type == "cuda" and attention.kernel is AttentionKernel.SDPA
    if attention.fell_back or (on_gpu_without_kernel and attention.requested is AttentionKernel.AUTO):
        log.warning("%s", attention.message())
        ctx.warn("AttentionFallback", attention.message())
    if compiled.requested and not compiled.compiled:
        log.warning("%s", compiled.message())
        ctx.warn("CompileFallback", compiled.message())
    if setup.lora_left_out:
        left_out = left_out_message(setup.lora_left_out)
        log.warning("%s", left_out)
        ctx.warn("LoraLayersLeftOut", left_out)
    kernels = TrainingPerformance(
        attention=attention.kernel,
        compiled=compiled.compiled,
        device=torch.cuda.get_device_name(setup.device) if setup.device.type == "cuda" else "cpu",
    )
    ctx.journal.performance = kernels
    return kernels
