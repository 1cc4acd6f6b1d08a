"""LoRA's update added into the base layer's output in place, with one matmul.

peft's `Linear.forward` computes `result + lora_B(lora_A(x)) * scaling`: for every adapted layer
that is three tensors as large as the layer's output (B's product, its scaled copy, the sum) on
top of the base output, and three passes over them, forward and again backward. Here the base
output takes the update in place, `out.addmm_(A(x), B.T, alpha=scaling)`: one matmul writing into
the output, no output-sized copy, and the scaling folded into the matmul. Autograd keeps the same
tensors as peft's (the input for A's gradient, the rank-r product for B's), so the step keeps no
more; what goes is the transients and their traffic.

With `lora.dropout` above 0, peft keeps for A's gradient a dropped-out copy of the input for every
adapter (three of one input for q, k and v): here A's product is one autograd function that keeps
the input (which autograd keeps anyway) and the 1-byte mask, and recomputes the dropped-out input
in backward; the masks are drawn as peft draws them.

The switch is a subclass of peft's own `Linear`, swapped onto each adapted layer: peft's merge,
unload, save and `disable_adapter` see the class they made. Whatever this path does not cover
(an adapter disabled or merged, several active adapters, DoRA and other variants, a bias on B,
per-example adapter names, extra arguments) goes to peft's forward unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .forward_swap import with_forward


def fuse_lora_updates(model: nn.Module) -> int:
    """Give every adapted peft `Linear` of `model` the fused forward; the number of layers changed."""
    # peft is imported only by LoRA runs (seconds to import).
    from peft.tuners.lora.layer import Linear as PeftLinear  # noqa: PLC0415

    fused_class = with_forward(PeftLinear, _fused_forward, name="FusedLoraLinear")
    changed = 0
    for module in model.modules():
        if type(module) is PeftLinear:
            module.__class__ = fused_class
            changed += 1
    return changed


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    adapter = _the_plain_adapter(self)
    if adapter is None or args or kwargs:
        peft_output: torch.Tensor = super(type(self), self).forward(x, *args, **kwargs)
        return peft_output
    lora_a: nn.Linear = self.lora_A[adapter]
    lora_b: nn.Linear = self.lora_B[adapter]
    flat_input = x.reshape(-1, x.shape[-1])
    # 2-D throughout: the in-place update then lands on the base layer's own fresh output, never on
    # a view of it (a view would make autograd copy the gradient back through it).
    out: torch.Tensor = self.base_layer(flat_input)
    adapter_input = self._cast_input_dtype(flat_input, lora_a.weight.dtype)
    dropout = self.lora_dropout[adapter]
    if isinstance(dropout, nn.Dropout) and dropout.training and dropout.p > 0:
        low_rank = _DroppedOutLowRank.apply(adapter_input, lora_a.weight, dropout.p)  # type: ignore[no-untyped-call]
    else:
        low_rank = lora_a(dropout(adapter_input))
    # Under autocast A's product is already in the output's dtype; B's weight is cast as autocast would.
    out.addmm_(low_rank.to(out.dtype), lora_b.weight.to(out.dtype).t(), alpha=self.scaling[adapter])
    return out.view(*x.shape[:-1], out.shape[-1])


class _DroppedOutLowRank(torch.autograd.Function):
    """`dropout(x) @ A.T`, keeping `x` and the mask for backward instead of the dropped-out copy of `x`.

    Computed in autocast's dtype when autocast is on (as `lora_A` would be), else in `x`'s.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, p: float) -> torch.Tensor:
        compute = _compute_dtype(x)
        dropped, mask = torch.native_dropout(x.to(compute), p, True)
        ctx.save_for_backward(x, mask, weight)
        ctx.scale, ctx.compute = 1.0 / (1.0 - p), compute
        return dropped @ weight.to(compute).t()

    @staticmethod
    def backward(ctx: Any, grad_low_rank: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, mask, weight = ctx.saved_tensors
        grad_low_rank = grad_low_rank.to(ctx.compute)
        grad_x = grad_weight = None
        # The 1-byte mask as scaled noise in the compute dtype, once: products with a bool tensor are slow on CPUs.
        noise = mask.to(ctx.compute).mul_(ctx.scale)
        if ctx.needs_input_grad[1]:
            dropped = x.to(ctx.compute) * noise
            grad_weight = (grad_low_rank.t() @ dropped).to(weight.dtype)
        if ctx.needs_input_grad[0]:
            grad_x = ((grad_low_rank @ weight.to(ctx.compute)) * noise).to(x.dtype)
        return grad_x, grad_weight, None


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def _the_plain_adapter(layer: Any) -> str | None:
    """The one active vanilla adapter this layer adds, or None when peft's forward must run."""
    if layer.disable_adapters or layer.merged:
        return None
    active = [name for name in layer.active_adapters if name in layer.lora_A]
    if len(active) != 1:
        return None
    adapter: str = active[0]
    if adapter in layer.lora_variant or layer.lora_B[adapter].bias is not None:
        return None
    return adapter
