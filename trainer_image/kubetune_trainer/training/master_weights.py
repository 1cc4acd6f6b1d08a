"""AdamW for bf16 weights that loses no update to rounding: an fp32 master copy, or a compensation buffer.

A bf16 weight of magnitude 0.02 moves in steps of 2^-7 x 0.0156 = 1.2e-4; an AdamW update at
learning rate 1e-5 is about 1e-5, under half a step, and rounds back to the same bf16 value.
Pure bf16 training therefore loses most updates at fine-tuning learning rates
(`bench/bf16_updates.py` counts them; docs/training.md has the figures). Two remedies, both
keeping the model itself in bf16 (bf16 compute, bf16 activations, bf16 gradients):

- `fp32`: the optimizer keeps an fp32 copy of each weight, applies AdamW to it in fp32 and
  writes it back to the bf16 weight rounded to nearest (4 more bytes per parameter);
- `bf16-compensated`: the optimizer keeps, per weight, the bf16 rounding error of its last
  write (Kahan summation) and adds it back before the next update, so small updates accumulate
  until they move the weight (2 more bytes per parameter).

The moments (m and v) are fp32 in both. The arithmetic is torch's AdamW (decoupled weight
decay, bias-corrected moments, eps outside the square root), so for fp32 weights the master
copy follows `torch.optim.AdamW` exactly. The extra state lives in `optimizer.state[param]`,
so checkpoints (`optimizer.state_dict()`, and the distributed state dict under FSDP) carry it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from ..contract import MasterWeights

_FP32_STATE = ("exp_avg", "exp_avg_sq", "master")
"""State kept in fp32 whatever the weight's dtype (torch's loader would cast it to the weight's)."""


class MasterWeightAdamW(Optimizer):
    """AdamW over low-precision weights with an fp32 master copy or a bf16 compensation buffer."""

    def __init__(
        self,
        params: Iterable[Any],
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        master_weights: MasterWeights = MasterWeights.FP32,
    ) -> None:
        if master_weights is MasterWeights.BF16:
            raise ValueError("pure bf16 needs no master weights: use torch.optim.AdamW")
        self.master_weights = master_weights
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    self._init_state(param, state)
                state["step"] += 1
                step = float(state["step"])
                grad = param.grad.float()
                # The fp32 value the weight stands for: its master copy, or itself plus its rounding error.
                weights = state["master"] if "master" in state else param.float() + state["compensation"].float()
                weights.mul_(1 - lr * weight_decay)
                state["exp_avg"].lerp_(grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denominator = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
                weights.addcdiv_(state["exp_avg"], denominator, value=-lr / (1 - beta1**step))
                param.copy_(weights)  # rounded to nearest
                if "compensation" in state:
                    state["compensation"].copy_(weights - param.float())
        return loss

    def _init_state(self, param: torch.Tensor, state: dict[str, Any]) -> None:
        state["step"] = torch.tensor(0.0)
        state["exp_avg"] = torch.zeros_like(param, dtype=torch.float32)
        state["exp_avg_sq"] = torch.zeros_like(param, dtype=torch.float32)
        if self.master_weights is MasterWeights.FP32 or param.dtype == torch.float32:
            state["master"] = param.detach().float().clone()
        else:
            state["compensation"] = torch.zeros_like(param)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's loader, then the fp32 state put back in fp32 (torch casts all state to the weight's dtype)."""
        super().load_state_dict(state_dict)
        params = [param for group in self.param_groups for param in group["params"]]
        for index, saved in state_dict["state"].items():
            param = params[int(index)]
            for key in _FP32_STATE:
                if key in saved:
                    self.state[param][key] = saved[key].to(device=param.device, dtype=torch.float32)
