"""The decoder layers' RMSNorms and SwiGLU MLPs, keeping fewer tensors for backward, same results.

What autograd keeps for transformers' own forwards, per token of every layer:

- **RMSNorm** (`weight * (x.float() * rsqrt(mean(x.float()**2) + eps)).to(dtype)`): the fp32 copy
  of the input (under bf16 compute, twice the input's bytes) and, when the weight trains, the
  normalised output besides what the next layer keeps of it. Here one autograd function keeps the
  input as it came and the fp32 reciprocal root (one number per token), and recomputes the
  normalised input in backward for both gradients.
- **SwiGLU MLP** (`down(silu(gate(x)) * up(x))`): the gate's output for silu's gradient, silu's
  output and the up output for the product's, and the product for the down projection's weight (or,
  under LoRA, its adapter's): four intermediate-sized tensors. Here the product is one autograd
  function that keeps the gate and up outputs only, and the down projection's copy of the product
  is recomputed from gate and up in backward (one elementwise pass). Two intermediate-sized tensors
  instead of four.
- **The norms' outputs**, which the projections after each norm save for their weights' (or
  adapters') gradients. Each decoder layer runs inside one `recompute_saved.recomputing()` block,
  where the norm registers its output and the MLP its product: whenever an operation saves one of
  them, backward gets it recomputed from what the layer keeps anyway (the norm's input and weight;
  gate and up) instead of keeping it.

The results equal transformers' to rounding (the forwards run the same operations; the gradients are
the same formulas, tested to 1e-5 against autograd's). Nothing is recomputed while another
saved-tensor hook is in force (activation checkpointing's: the packed tensors' references to what
they are recomputed from would keep what checkpointing frees). Under torch.compile, where these
functions and hooks would be opaque, the modules run their own operations and inductor's partitioner
chooses what to keep, told by checkpoint regions to recompute the same two (`_compiled_norm_forward`,
`_compiled_mlp_forward`): left to itself it would keep the product, which a matmul reads in backward.

A module becomes lean only if its class has this shape (an RMSNorm's `weight` and epsilon; an MLP's
`gate_proj`, `up_proj`, `down_proj` and a SiLU `act_fn`) and its own forward on a random probe gives
exactly the lean forward's output (one probe per class): a norm of another formula (Gemma's
`1 + weight`) or an MLP of another wiring keeps transformers' forward, as does a module whose
instance carries a forward of its own. Classes are swapped onto subclasses of their own, so
`isinstance`, `state_dict` and saving see the model's classes.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional
from torch.utils.checkpoint import checkpoint

from .compile import decoder_layers
from .forward_swap import forward_of, with_forward
from .recompute_saved import recompute_later, recomputing

log = logging.getLogger(__name__)

_SILU_CLASSES = frozenset({"SiLU", "SiLUActivation"})


@dataclass(frozen=True)
class LeanLayers:
    """How many modules took the lean forwards, and how many candidates kept their own."""

    norms: int
    mlps: int
    kept_own: int

    def message(self) -> str:
        kept = f"; {self.kept_own} kept their own forward (another formula)" if self.kept_own else ""
        return f"lean layers: {self.norms} RMSNorms and {self.mlps} SwiGLU MLPs keep fewer tensors for backward{kept}"


def make_layers_lean(model: nn.Module) -> LeanLayers:
    """Give `model`'s RMSNorms and SwiGLU MLPs the lean forwards (before LoRA is added: the probe runs the
    base layers, as loaded)."""
    lean_norms = lean_mlps = kept_own = 0
    verdicts: dict[type, bool] = {}  # one probe per class: the formula is the class's, not the weights'
    for module in list(model.modules()):
        if "forward" in vars(module):
            continue  # a forward set on the instance (a hook library's wrapper) would shadow the class's
        if _is_rms_norm_shaped(module):
            lean, weight = _lean_class(module, _norm_forward), module.get_parameter("weight")
        elif _is_swiglu_shaped(module):
            lean, weight = _lean_class(module, _mlp_forward), module.get_parameter("gate_proj.weight")
        else:
            continue
        if weight.is_meta:
            continue  # no weights yet: nothing to compare against
        if type(module) not in verdicts:
            verdicts[type(module)] = _same_on_probe(module, lean, _probe_input(weight))
        if not verdicts[type(module)]:
            kept_own += 1
            continue
        lean_norms += lean.forward is _norm_forward
        lean_mlps += lean.forward is _mlp_forward
        module.__class__ = lean
    _make_decoder_layers_lean(model)
    return LeanLayers(norms=lean_norms, mlps=lean_mlps, kept_own=kept_own)


def lean_in(model: nn.Module) -> tuple[bool, bool]:
    """Whether `model`'s norms and its MLPs run the lean forwards (the memory plan counts them so). The norms
    count as lean where their decoder layers recompute their outputs too; lean norms alone are counted
    as transformers' own (more bytes than they keep: a plan on the safe side)."""
    forwards = {forward_of(type(module)) for module in model.modules()}
    return _norm_forward in forwards and _layer_forward in forwards, _mlp_forward in forwards


# --------------------------------------------------------------------------- decoder layer


def _make_decoder_layers_lean(model: nn.Module) -> None:
    """Decoder layers holding a lean norm or MLP run their forward inside `recomputing()`."""
    lean_forwards = (_norm_forward, _mlp_forward)
    for layer in decoder_layers(model):
        if "forward" in vars(layer):
            continue
        if any(forward_of(type(inner)) in lean_forwards for inner in layer.modules()):
            layer.__class__ = _lean_class(layer, _layer_forward)


def _layer_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
    """The layer's own forward, inside one `recomputing()` block: the norms' outputs, which the projections
    after them save, and the MLP's product are recomputed in backward from what the layer keeps anyway
    (the norms' inputs, gate and up). Compiled, the checkpoint regions of the norms and the MLP do it."""
    own = super(_lean_layer_class(type(self)), self).forward  # type: ignore[arg-type]
    if torch.compiler.is_compiling():
        return own(*args, **kwargs)
    with recomputing():
        return own(*args, **kwargs)


def _lean_layer_class(cls: type) -> type:
    """The class in `cls`'s hierarchy that took `_layer_forward`. FSDP2 subclasses the layers it shards (and
    transformers wraps the subclass's inherited forward again), so the layer's own forward is the one after
    the deepest class whose forward is ours, not after the instance's class. Looked up on every call (a
    few microseconds): a cache filled while dynamo traces the first compiled call changes what the graph
    was guarded on, and the layers compile again (measured by bench/compile_time.py: 2 graphs, not 1)."""
    return [c for c in cls.__mro__ if "forward" in vars(c) and forward_of(c) is _layer_forward][-1]


# --------------------------------------------------------------------------- RMSNorm


class _RMSNorm(torch.autograd.Function):
    """transformers' RMSNorm forward; keeps the input and the fp32 reciprocal root, not an fp32 copy."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        upcast = x.to(torch.float32)
        reciprocal_root = _reciprocal_root(upcast, eps)
        ctx.save_for_backward(x, weight, reciprocal_root)
        return weight * (upcast * reciprocal_root).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, weight, reciprocal_root = ctx.saved_tensors
        normalised = x.to(torch.float32) * reciprocal_root
        grad_x = grad_weight = None
        if ctx.needs_input_grad[1]:
            # As autograd takes it through `weight * normalised.to(x.dtype)`: the product in the output's dtype.
            per_token = grad_out * normalised.to(x.dtype)
            grad_weight = per_token.reshape(-1, per_token.shape[-1]).sum(0).to(weight.dtype)
        if ctx.needs_input_grad[0]:
            grad_normalised = (grad_out * weight).to(x.dtype).to(torch.float32)
            mean_dot = (grad_normalised * normalised).mean(-1, keepdim=True)
            grad_x = (reciprocal_root * (grad_normalised - normalised * mean_dot)).to(x.dtype)
        return grad_x, grad_weight, None


def _reciprocal_root(upcast: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.rsqrt(upcast.pow(2).mean(-1, keepdim=True) + eps)


def _norm_output(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """`_RMSNorm`'s output recomputed from its input, by the same operations (so to the bit)."""
    upcast = x.to(torch.float32)
    return weight * (upcast * _reciprocal_root(upcast, eps)).to(x.dtype)


def _norm_forward(self: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    if torch.compiler.is_compiling():
        return _compiled_norm_forward(self, hidden_states)
    eps = _epsilon(self)
    result: torch.Tensor = _RMSNorm.apply(hidden_states, self.weight, eps)  # type: ignore[no-untyped-call]
    # Inside a lean decoder layer the projections after the norm save its output: they get it recomputed
    # from the input and weight the norm keeps anyway.
    recompute_later(result, functools.partial(_norm_output, hidden_states, self.weight, eps))
    return result


def _compiled_norm_forward(module: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    """The norm's own operations in a checkpoint region: inductor then keeps its input, as the lean norm
    does, and recomputes the normalised output in backward where the projections after it read it, as the
    eager lean layer's hook does."""
    normed: torch.Tensor = checkpoint(_own_forward, module, hidden_states, use_reentrant=False)
    return normed


def _epsilon(module: nn.Module) -> float:
    eps = getattr(module, "variance_epsilon", None)
    return float(eps if eps is not None else getattr(module, "eps"))  # noqa: B009 - one of the two names


def _is_rms_norm_shaped(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    has_epsilon = isinstance(getattr(module, "variance_epsilon", getattr(module, "eps", None)), float)
    return (
        type(module).__name__.endswith("RMSNorm")
        and isinstance(weight, nn.Parameter)
        and weight.dim() == 1
        and has_epsilon
        and getattr(module, "bias", None) is None
    )


# --------------------------------------------------------------------------- SwiGLU MLP


@dataclass
class _SiluSlot:
    """silu(gate) as the product's recomputation made it in backward, for the product's own backward,
    which runs next: one pass over the intermediate instead of two."""

    tensor: torch.Tensor | None = None

    def take(self, gate: torch.Tensor) -> torch.Tensor:
        kept, self.tensor = self.tensor, None
        return kept if kept is not None else functional.silu(gate)


class _SwiGLU(torch.autograd.Function):
    """`silu(gate) * up`, keeping gate and up only (silu's output is recomputed in backward)."""

    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, up: torch.Tensor, slot: _SiluSlot) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        ctx.slot = slot
        return functional.silu(gate) * up

    @staticmethod
    def backward(ctx: Any, grad_product: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        gate, up = ctx.saved_tensors
        grad_gate = grad_up = None
        if ctx.needs_input_grad[1]:
            grad_up = grad_product * ctx.slot.take(gate)
        if ctx.needs_input_grad[0]:
            # The same kernels autograd runs for `silu(gate) * up`: the product's gradient, then silu's.
            grad_gate = torch.ops.aten.silu_backward(grad_product * up, gate)
        ctx.slot.tensor = None
        return grad_gate, grad_up, None


def _mlp_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    if torch.compiler.is_compiling():
        return _compiled_mlp_forward(self, x)
    gate = self.gate_proj(x)
    up = self.up_proj(x)
    slot = _SiluSlot()
    product: torch.Tensor = _SwiGLU.apply(gate, up, slot)  # type: ignore[no-untyped-call]
    with recomputing() as recomputed:
        if recomputed is not None:
            recomputed.add(product, functools.partial(_recomputed_product, gate, up, slot))
        return self.down_proj(product)  # type: ignore[no-any-return]


def _recomputed_product(gate: torch.Tensor, up: torch.Tensor, slot: _SiluSlot) -> torch.Tensor:
    """The product for the down projection's backward; silu's output is left for the product's own backward,
    which runs next."""
    slot.tensor = functional.silu(gate)
    return slot.tensor * up


def _own_forward(module: Any, x: torch.Tensor) -> torch.Tensor:
    """The module's own class's forward: what torch.compile traces, so that inductor's partitioner, which
    sees every operation, chooses what to keep and what to recompute."""
    result: torch.Tensor = super(type(module), module).forward(x)
    return result


def _compiled_mlp_forward(module: Any, x: torch.Tensor) -> torch.Tensor:
    """The MLP's own operations, the product in a checkpoint region (the compiled graph's only hint).
    Left to itself inductor's partitioner keeps the product (the down projection's weight gradient reads
    it, and it never recomputes what a matmul reads in backward): a third intermediate-sized tensor per
    layer, which the memory plan does not count. Inside the region it is recomputed in backward from gate
    and up, which silu's gradient keeps anyway."""
    gate = module.gate_proj(x)
    up = module.up_proj(x)
    product: torch.Tensor = checkpoint(_silu_product, gate, up, use_reentrant=False)
    return module.down_proj(product)  # type: ignore[no-any-return]


def _silu_product(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return functional.silu(gate) * up


def _is_swiglu_shaped(module: nn.Module) -> bool:
    projections = (getattr(module, name, None) for name in ("gate_proj", "up_proj", "down_proj"))
    return all(isinstance(p, nn.Linear) for p in projections) and (
        type(getattr(module, "act_fn", None)).__name__ in _SILU_CLASSES
    )


# --------------------------------------------------------------------------- probe and swap


def _lean_class(module: nn.Module, forward: Any) -> Any:
    return with_forward(type(module), forward, name=f"Lean{type(module).__name__}")


def _probe_input(weight: torch.Tensor) -> torch.Tensor:
    width = weight.shape[-1]
    generator = torch.Generator().manual_seed(0)
    return torch.randn(1, 3, width, generator=generator).to(device=weight.device, dtype=weight.dtype)


def _same_on_probe(module: nn.Module, lean: Any, probe: torch.Tensor) -> bool:
    """The module's own forward and the lean one give the same output on a random input."""
    try:
        with torch.no_grad():
            own = module(probe)
            lean_output = lean.forward(module, probe)
    except Exception as failed:
        log.debug("lean layers: %s keeps its forward (%s)", type(module).__name__, failed)
        return False
    return isinstance(own, torch.Tensor) and own.shape == lean_output.shape and torch.equal(own, lean_output)
