"""AdamW with weight decay on matrices only.

Biases and normalisation weights (every parameter with fewer than two dimensions) are left out
of weight decay, as in nanoGPT and the Hugging Face Trainer: decaying a norm's gain towards zero
only fights the normalisation. Frozen parameters (a LoRA base) never reach the optimizer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.distributed.tensor import DTensor
from torch.optim import Optimizer

from ..contract import MasterWeights
from .master_weights import MasterWeightAdamW


def parameter_groups(model: nn.Module, *, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups of the trainable parameters: matrices with `weight_decay`, the rest without."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.dim() >= 2 else no_decay).append(parameter)
    groups: list[dict[str, Any]] = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(
    model: nn.Module,
    *,
    learning_rate: float,
    weight_decay: float,
    master_weights: MasterWeights = MasterWeights.FP32,
) -> Optimizer:
    """AdamW over the trainable parameters; fused kernels where torch has them for the device.

    Trainable bf16/fp16 weights get `MasterWeightAdamW` (an fp32 master copy or a compensation
    buffer, `master_weights`) unless `master_weights` is pure bf16; fp32 weights (CPU runs,
    LoRA adapters) get torch's AdamW.
    """
    groups = parameter_groups(model, weight_decay=weight_decay)
    low_precision = any(p.dtype in (torch.bfloat16, torch.float16) for group in groups for p in group["params"])
    if low_precision and master_weights is not MasterWeights.BF16:
        return MasterWeightAdamW(groups, lr=learning_rate, betas=(0.9, 0.999), eps=1e-8, master_weights=master_weights)
    device = next(p for group in groups for p in group["params"]).device
    # The fused step is one kernel per parameter group instead of several per tensor;
    # torch has it for CPU and CUDA, and it is not supported for DTensor (FSDP) parameters.
    fused = device.type in ("cpu", "cuda") and not _has_dtensor(groups)
    return torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, 0.999), eps=1e-8, fused=fused)


def _has_dtensor(groups: list[dict[str, Any]]) -> bool:
    return any(isinstance(p, DTensor) for group in groups for p in group["params"])
