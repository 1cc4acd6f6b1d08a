"""torch.compile of the decoder layers, when the template asks: compiled where it works, eager where not.

Each decoder layer (transformers' `GradientCheckpointingLayer`) is compiled on its own, as
torchtitan does: every layer runs the same code, so one compiled graph serves them all, and the
wrappers around the layers (LoRA, DDP, FSDP2, activation checkpointing) stay as they are. The
attention call is in the graph: varlen's cumulative lengths and longest document are its inputs
(`training.attention`), like the row's length they change with every packed micro-batch, so the
layers compile with dynamic shapes from the first trace (one graph for every length; the CPU's
per-example path, which reads the lengths on the host, breaks the graph there).

Compilation is lazy (the first forward pass compiles), so a compiler that is missing or broken
would only show at the first training step. `compile_layers` therefore runs one forward and
backward pass on a small packed row right away; if anything fails the layers go back to eager,
and the reason is kept for the log and the Result (warning CompileFallback). Later shapes that
need a recompile and fail run eagerly too (dynamo's suppress_errors), never ending the run.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data.packing import ModelBatch
from ..data.tokenization import TokenizedExample

log = logging.getLogger(__name__)

PROBE_LENGTHS = (48, 83)
"""Two examples in the probe row, so the document-masked attention path runs too. Their sum, the row's
length, is a prime: dynamo gives dynamic sizes that are equal one symbol, so a row as long as a head
(128 on Llama 3 8B, Mistral, Qwen) would tie the length to the head size, and the first real
micro-batch would be compiled again."""


@dataclass(frozen=True)
class CompileOutcome:
    requested: bool
    compiled: bool
    layers: int = 0
    reason: str | None = None
    """Why the layers run eager although compilation was requested."""

    def message(self) -> str:
        if not self.requested:
            return "torch.compile: off"
        if self.compiled:
            return f"torch.compile: {self.layers} decoder layers compiled"
        return f"torch.compile: requested, running eager ({self.reason})"


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The model's decoder layers: the modules transformers checkpoints one by one."""
    from transformers.modeling_layers import GradientCheckpointingLayer  # noqa: PLC0415

    return [module for module in model.modules() if isinstance(module, GradientCheckpointingLayer)]


def compiled_in(model: nn.Module) -> bool:
    """Whether `model`'s decoder layers run compiled (the memory plan counts what compiled layers keep)."""
    return any(getattr(layer, "_compiled_call_impl", None) is not None for layer in decoder_layers(model))


def compiler_missing(device: torch.device) -> str | None:
    """Why torch.compile cannot work here, known without trying; None when it may."""
    if not getattr(torch._dynamo, "is_dynamo_supported", lambda: True)():
        return "torch.compile is not supported on this Python"
    if device.type == "cuda":
        from torch.utils._triton import has_triton  # noqa: PLC0415

        if not has_triton():
            return "triton is not installed (inductor needs it on a GPU)"
        return None
    if not any(shutil.which(name) for name in ("g++", "c++", "clang++")):
        return "no C++ compiler on this machine (inductor needs one on a CPU)"
    return None


def compile_layers(
    model: nn.Module,
    *,
    requested: bool,
    device: torch.device,
    vocab_size: int,
    probe: Callable[[nn.Module], None] | None = None,
    backend: str | Callable[..., Any] = "inductor",
) -> CompileOutcome:
    """Compile `model`'s decoder layers in place if `requested`, and prove it with one pass; eager on failure.

    `backend` is inductor in every run; the tests name `aot_eager_decomp_partition` (inductor's graphs
    and partitioner, eager kernels), which needs no C++ compiler, or a backend of their own."""
    if not requested:
        return CompileOutcome(requested=False, compiled=False)
    missing = compiler_missing(device) if backend == "inductor" else None
    if missing is not None:
        return CompileOutcome(requested=True, compiled=False, reason=missing)
    layers = decoder_layers(model)
    if not layers:
        return CompileOutcome(requested=True, compiled=False, reason="no transformers decoder layers found")
    for layer in layers:
        # Dynamic from the first trace: every packed micro-batch has its own length and document count,
        # so the probe's shapes are never seen again: a static first graph would serve the probe alone, and
        # dynamo would recompile for the first real micro-batches (two whole compiles more in the tests).
        layer.compile(backend=backend, dynamic=True)
    try:
        (probe or (lambda m: probe_pass(m, device=device, vocab_size=vocab_size)))(model)
    except Exception as failed:  # any failure: the layers go back to eager
        for layer in layers:
            layer._compiled_call_impl = None  # what nn.Module.compile set: calls go to forward again
        model.zero_grad(set_to_none=True)
        first_line = str(failed).strip().splitlines()[0][:200] if str(failed).strip() else ""
        return CompileOutcome(
            requested=True, compiled=False, reason=f"compilation failed: {type(failed).__name__}: {first_line}"
        )
    # A later recompile (a new shape) that fails runs that frame eagerly instead of ending the run.
    torch._dynamo.config.suppress_errors = True
    return CompileOutcome(requested=True, compiled=True, layers=len(layers))


def probe_pass(model: nn.Module, *, device: torch.device, vocab_size: int) -> None:
    """One forward and backward pass on a small packed row (random tokens); gradients are cleared after."""
    from ..data.packing import collate_packed  # noqa: PLC0415

    generator = torch.Generator().manual_seed(0)
    examples = [
        TokenizedExample(
            input_ids=torch.randint(0, vocab_size, (length,), generator=generator).tolist(),
            labels=torch.randint(0, vocab_size, (length,), generator=generator).tolist(),
        )
        for length in PROBE_LENGTHS
    ]
    batch: ModelBatch = collate_packed(examples).to(device)
    was_training = model.training
    model.train()
    logits = model(**batch.model_inputs()).logits
    logits.float().mean().backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
