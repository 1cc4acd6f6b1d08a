"""What the GPU did: peak memory allocated and model FLOPs utilization (MFU).

MFU = 6 x N x tokens/s / (GPUs x the GPU's dense bf16 peak), with N every parameter of the model
(embeddings included, as the GPU yardstick counts them) and tokens the real (non-pad) tokens
trained per second over all ranks: PaLM's definition, the one torchtitan and the issue's
figures use. In a mixture of experts N is the parameters a token computes with: the experts it is
not routed to are left out (`memory_model.ModelShape.active_parameters`; Mixtral 8x7B's 46.7B are
12.9B a token, so counting them all would report 3.6 times its MFU). For LoRA the 6N numerator is
"6N-equivalent": frozen weights need no weight gradients, so LoRA's real FLOPs are nearer 4N per token.

The peak is the datasheet's dense (no 2:4 sparsity) bf16 tensor-core figure, looked up by the
name CUDA reports; a GPU not in the table gets no MFU rather than a guess, and a CPU never has one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..memory_model import ModelShape
from .loss import transformers_model_of

BF16_DENSE_PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    # (a lower-case fragment of torch.cuda.get_device_name(), FLOP/s); the first match wins.
    ("gh200", 989e12),
    ("h200", 989e12),
    ("h100 pcie", 756e12),
    ("h100 nvl", 835e12),
    ("h100", 989e12),  # SXM (e.g. "NVIDIA H100 80GB HBM3")
    ("h800", 989e12),
    ("b200", 2250e12),
    ("a100", 312e12),
    ("a800", 312e12),
    ("l40s", 362e12),
    ("l4", 121e12),
    ("a10g", 70e12),
    ("a10", 125e12),
)
"""NVIDIA datasheet figures (bf16 tensor core, dense)."""


def bf16_peak_flops(device_name: str) -> float | None:
    """The dense bf16 peak of the GPU named `device_name`, or None when it is not in the table."""
    name = device_name.lower()
    for fragment, flops in BF16_DENSE_PEAK_FLOPS:
        if fragment in name:
            return flops
    return None


def parameter_count(model: nn.Module) -> int:
    """Every distinct parameter (tied weights counted once), trainable or not."""
    seen: set[int] = set()
    total = 0
    for parameter in model.parameters():
        if id(parameter) not in seen:
            seen.add(id(parameter))
            total += parameter.numel()
    return total


def computed_per_token(model: nn.Module) -> int:
    """N of 6N: `parameter_count`, less the experts a token is not routed to when the model is a mixture of experts."""
    total = parameter_count(model)
    config = getattr(transformers_model_of(model), "config", None)
    if config is None:
        return total
    try:
        shape = ModelShape.from_config(config.to_dict(), parameters=total)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return total
    return shape.active_parameters


@dataclass(frozen=True)
class GpuStats:
    """How one run's throughput and memory are read on its device."""

    device: torch.device
    device_name: str
    parameters: int
    """N of 6N: on FSDP, the whole model's count (every rank's shard together); a mixture of experts' active ones."""
    gpus: int
    peak_flops: float | None

    @classmethod
    def for_run(
        cls, model: nn.Module, *, device: torch.device, world_size: int, parameters: int | None = None
    ) -> GpuStats:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        return cls(
            device=device,
            device_name=name,
            parameters=parameters if parameters is not None else computed_per_token(model),
            gpus=world_size,
            peak_flops=bf16_peak_flops(name) if device.type == "cuda" else None,
        )

    def mfu(self, tokens_per_second: float) -> float | None:
        """Model FLOPs utilization of `tokens_per_second` (all ranks together); None off known GPUs."""
        if self.peak_flops is None or tokens_per_second <= 0:
            return None
        return 6.0 * self.parameters * tokens_per_second / (self.gpus * self.peak_flops)

    def peak_memory_bytes(self) -> int | None:
        """Most memory this process's tensors have held on its GPU so far; None on a CPU."""
        if self.device.type != "cuda":
            return None
        return int(torch.cuda.max_memory_allocated(self.device))
