"""The micro-batch token budget, planned from the device's free memory (`memory_model`).

On a GPU the budget is the largest micro-batch whose activations fit the memory left once the
model is loaded and gradients and optimizer state are set aside (`memory_model.plan_token_budget`);
out-of-memory remediation (`autoBatchOnOOM`, `training.oom`) stays the safety net for what
the model misjudges. On a CPU the budget stays one `maxSeqLength`: attention over a packed row
grows with its square and the matmuls are efficient at a few hundred tokens (docs/training.md);
the plan is still computed from the available host memory and logged, for the record.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import nn

from ..contract import MemoryPlanReport, RuntimeSettings
from ..memory_model import MemoryPlan, ModelShape, TrainingSetup, plan_token_budget
from .compile import compiled_in
from .lean_layers import lean_in
from .loss import transformers_model_of

log = logging.getLogger(__name__)


def plan_memory(
    model: nn.Module, *, runtime: RuntimeSettings, lora_rank: int | None, max_seq_length: int, device: torch.device,
    world_size: int, lora_dropout: bool = False,
) -> MemoryPlan:  # fmt: skip
    """The plan for `model` as loaded on `device`; its `token_budget` is the one training uses."""
    causal_lm: Any = transformers_model_of(model)
    config = causal_lm.config.to_dict()
    parameters = sum(p.numel() for p in causal_lm.parameters() if not _is_adapter(p, lora_rank))
    shape = ModelShape.from_config(config, parameters=parameters)
    fsdp = runtime.strategy.value == "fsdp" and world_size > 1
    lean_norms, lean_mlp = lean_in(causal_lm)
    setup = TrainingSetup.for_run(
        shape,
        precision=runtime.precision.value,
        master_weights=runtime.master_weights.value,
        lora_rank=lora_rank,
        lora_dropout=lora_dropout,
        gradient_checkpointing=runtime.gradient_checkpointing,
        shards=world_size if fsdp else 1,
        ddp_buckets=world_size > 1 and not fsdp,
        device=device.type,
        lean_norms=lean_norms,
        lean_mlp=lean_mlp,
        compiled=compiled_in(causal_lm),
        attention_length=max_seq_length,
    )
    plan = plan_token_budget(shape, setup, free_bytes=_free_bytes(device), max_seq_length=max_seq_length)
    if device.type != "cuda":
        plan = MemoryPlan(max_seq_length, plan.free_bytes, plan.static_bytes, plan.activation_bytes_per_token,
                          plan.loss_chunk_bytes, "cpu")  # fmt: skip
    log.warning("memory plan: %s", plan.describe())
    return plan


def report_of(plan: MemoryPlan) -> MemoryPlanReport:
    """The plan as the Result carries it."""
    return MemoryPlanReport(
        token_budget=plan.token_budget,
        limited_by=plan.limited_by,
        free_bytes=plan.free_bytes,
        static_bytes=plan.static_bytes,
        activation_bytes_per_token=plan.activation_bytes_per_token,
        loss_chunk_bytes=plan.loss_chunk_bytes,
    )


def _is_adapter(parameter: nn.Parameter, lora_rank: int | None) -> bool:
    # Under LoRA every trainable parameter is an adapter's; the base is frozen.
    return lora_rank is not None and parameter.requires_grad


def _free_bytes(device: torch.device) -> int:
    """Free memory on `device`: what the CUDA driver reports (within a per-process cap if one is set), or the host's."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        fraction = getattr(torch.cuda, "get_per_process_memory_fraction", None)
        if fraction is not None:
            capped = int(total * fraction(device)) - torch.cuda.memory_reserved(device)
            free = min(free, max(capped, 0))
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError):
        return 0
