"""How numbers are held while training: load dtype, autocast and loss scaling.

On CPU everything is fp32 (bf16 matmuls are slow on most CPUs and the tests compare weights to
1e-5). On GPU, `bf16` loads the weights as bf16 and runs under bf16 autocast, which is a no-op
for the bf16 model and makes fp32 LoRA adapters compute in bf16 (no fp32 copy of their
inputs); how the optimizer keeps bf16 weights is `runtime.masterWeights` (`training.optim`,
`training.master_weights`). fp16 keeps fp32 weights under fp16 autocast with a gradient scaler,
because pure fp16 weights under AdamW underflow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..contract import Precision


@dataclass(frozen=True)
class PrecisionPlan:
    load_dtype: torch.dtype
    autocast_dtype: torch.dtype | None
    device_type: str

    @property
    def needs_grad_scaler(self) -> bool:
        return self.autocast_dtype is torch.float16

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Forward passes run inside this; a no-op unless autocast is planned."""
        if self.autocast_dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device_type, dtype=self.autocast_dtype):
            yield


def plan_precision(precision: Precision, *, device: torch.device) -> PrecisionPlan:
    """The precision really used for `precision` (from the template) on `device`."""
    if device.type != "cuda" or precision is Precision.FP32:
        return PrecisionPlan(load_dtype=torch.float32, autocast_dtype=None, device_type=device.type)
    if precision is Precision.BF16:
        return PrecisionPlan(load_dtype=torch.bfloat16, autocast_dtype=torch.bfloat16, device_type=device.type)
    return PrecisionPlan(load_dtype=torch.float32, autocast_dtype=torch.float16, device_type=device.type)
