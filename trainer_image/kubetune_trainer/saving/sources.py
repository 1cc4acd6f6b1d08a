"""What each output tensor is made of: the trained model's (sharded) tensors, gathered one at a time.

An `OutputTensor` knows its saved name, global shape and dtype without any communication (a
DTensor carries its global shape), so every rank plans the same files. `gather` is a collective
under FSDP2: every rank calls it for the same tensors in the same order; only the writing rank
keeps the result.

- the full model: `state_dict` names, tied aliases written once under their first name (the
  embedding, as transformers keeps it), persistent buffers included;
- LoRA merged: peft's `merge_and_unload` names (no `base_model.model.` prefix, no `.base_layer`),
  each adapted weight `W + B @ A * scaling` computed per tensor as peft's merge computes it;
- the adapter: the `lora_` tensors under the peft model's `state_dict` names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from ..errors import ComputationFailed

PEFT_PREFIX = "base_model.model."
BASE_LAYER = ".base_layer."


@dataclass(frozen=True)
class OutputTensor:
    """One tensor of the output, gathered only when asked."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    source: torch.Tensor
    """The model's tensor it is made from (a DTensor shard under FSDP2; the base weight of a merged layer)."""
    gather: Callable[[bool], torch.Tensor | None]
    """Collective: the whole tensor on the CPU where the argument (this rank writes) is true, else None."""

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """The unsharded tensor (an all-gather for a DTensor, every rank taking part), detached."""
    full = tensor.full_tensor() if isinstance(tensor, DTensor) else tensor
    return full.detach()


def full_model_tensors(model: nn.Module) -> list[OutputTensor]:
    """The model's weights as `save_pretrained` names them, one entry per distinct tensor."""
    return [_plain(name, tensor) for name, tensor in distinct_tensors(model)]


def adapter_tensors(model: nn.Module) -> list[OutputTensor]:
    """The LoRA adapter's tensors under the peft model's own names (peft's `save_pretrained` renames them)."""
    return [_plain(name, tensor) for name, tensor in distinct_tensors(model) if _is_adapter(name)]


def merged_lora_tensors(model: Any) -> list[OutputTensor]:
    """The base model with the adapter folded in, as peft's `merge_and_unload` then `save_pretrained` write it."""
    layers = _lora_layers(model)
    tensors: list[OutputTensor] = []
    for name, tensor in distinct_tensors(model):
        if _is_adapter(name):
            continue
        saved = name.removeprefix(PEFT_PREFIX)
        owner, _, leaf = saved.rpartition(BASE_LAYER)
        if not owner:
            tensors.append(_plain(saved, tensor))
            continue
        saved = f"{owner}.{leaf}"
        layer = layers.get(PEFT_PREFIX + owner)
        if leaf == "weight" and layer is not None:
            tensors.append(_merged(saved, tensor, layer=layer, adapter=active_adapter(model)))
        else:
            tensors.append(_plain(saved, tensor))
    return tensors


def distinct_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """`state_dict` entries (parameters and persistent buffers), each tensor once under its first name."""
    seen: set[int] = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        yield name, tensor


def _is_adapter(name: str) -> bool:
    return any(part.startswith("lora_") for part in name.split("."))


def _plain(name: str, tensor: torch.Tensor) -> OutputTensor:
    def gather(keep: bool) -> torch.Tensor | None:
        full = whole(tensor)
        return full.cpu() if keep else None

    return OutputTensor(name=name, shape=tuple(tensor.shape), dtype=tensor.dtype, source=tensor, gather=gather)


def _merged(name: str, weight: torch.Tensor, *, layer: Any, adapter: str) -> OutputTensor:
    lora_a, lora_b = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight
    scaling = layer.scaling[adapter]
    fan_in_fan_out = bool(layer.fan_in_fan_out)

    def gather(keep: bool) -> torch.Tensor | None:
        merged, a, b = whole(weight), whole(lora_a), whole(lora_b)
        if not keep:
            return None
        # peft's Linear.get_delta_weight and merge: fp32 for half precision on the CPU, then `+=`.
        cast = b.device.type == "cpu" and b.dtype in (torch.float16, torch.bfloat16)
        delta = (b.float() @ a.float()) if cast else b @ a
        delta = (delta.T if fan_in_fan_out else delta) * scaling
        if not isinstance(weight, DTensor):
            merged = merged.clone()  # the model's own weight: never changed in place
        merged += delta.to(b.dtype) if cast else delta
        return merged.cpu()

    return OutputTensor(name=name, shape=tuple(weight.shape), dtype=weight.dtype, source=weight, gather=gather)


def _lora_layers(model: Any) -> dict[str, Any]:
    """Module name -> peft LoRA layer, refusing what the per-tensor merge does not compute."""
    from peft.tuners.lora.layer import Linear, LoraLayer  # noqa: PLC0415 (seconds to import; LoRA only)

    layers: dict[str, Any] = {}
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        adapter = active_adapter(model)
        if not isinstance(module, Linear) or adapter in module.lora_variant or module.lora_bias[adapter]:
            raise ComputationFailed(
                f"the LoRA layer {name} ({type(module).__name__}) cannot be merged tensor by tensor under FSDP: "
                "only plain LoRA on linear layers can",
                reason="LoraMergeUnsupported",
                hint="Set lora.merge to false (the adapter is saved alone), or target linear layers only.",
            )
        layers[name] = module
    return layers


def active_adapter(model: Any) -> str:
    return str(model.active_adapter)
