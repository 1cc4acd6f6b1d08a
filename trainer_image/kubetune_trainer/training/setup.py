"""The model as training needs it: loaded from the local snapshot, LoRA-wrapped, placed, distributed."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM

from ..context import DistInfo
from ..contract import AttentionKernel, LoraConfig, RuntimeSettings
from .attention import AttentionChoice, AttentionShape, choose_attention, use_attention
from .compile import CompileOutcome, compile_layers, probe_pass
from .distributed import pick_device, wrap_model
from .lean_layers import make_layers_lean
from .lora import apply_lora, keep_adapter_inputs_as_they_come, unadapted_linears
from .lora_fused import fuse_lora_updates
from .precision import PrecisionPlan, plan_precision
from .weights import check_weight_shapes, weights_do_not_match

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSetup:
    """How Initialization placed the model: device, precision, LoRA, the kernels chosen (`handoffs.InitializedRun`)."""

    device: torch.device
    precision: PrecisionPlan
    lora: bool
    attention: AttentionChoice = field(
        default_factory=lambda: AttentionChoice(requested=AttentionKernel.AUTO, kernel=AttentionKernel.SDPA)
    )
    compiled: CompileOutcome = field(default_factory=lambda: CompileOutcome(requested=False, compiled=False))
    lora_left_out: tuple[str, ...] = ()
    """Linear layers LoRA's all-linear left without an adapter (`training.lora.unadapted_linears`)."""


def load_model(snapshot: Path, *, dtype: torch.dtype) -> Any:
    """The causal LM in `snapshot` (a local directory: a repo id would probe the network).

    Its weights are checked against its config.json first (`training.weights`): wrong shapes and
    missing tensors are refused, never replaced by random values.
    """
    check_weight_shapes(snapshot)
    try:
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            str(snapshot),
            trust_remote_code=False,
            use_safetensors=True,
            dtype=dtype,
            output_loading_info=True,
        )
    except RuntimeError as failed:
        # A shape mismatch the header check could not see (a tensor transformers renames on load).
        if "ignore_mismatched_sizes" in str(failed):
            raise weights_do_not_match(snapshot, mismatched=[str(failed)]) from failed
        raise
    model, info = loaded
    missing = info.get("missing_keys", [])
    mismatched = [str(entry) for entry in info.get("mismatched_keys", [])]
    if missing or mismatched:
        raise weights_do_not_match(snapshot, mismatched=mismatched, missing=missing)
    # With the KV cache on, transformers cannot see packed sequences' boundaries and lets them
    # attend to each other; training never uses the cache anyway.
    model.config.use_cache = False
    return model


def prepare_model(
    snapshot: Path, *, runtime: RuntimeSettings, lora: LoraConfig | None, dist_info: DistInfo
) -> tuple[nn.Module, TrainingSetup]:
    """Load, choose the attention kernel, make the norms and MLPs lean, optionally checkpoint activations
    and add LoRA, move to the device, optionally compile, wrap for DDP/FSDP."""
    device = pick_device(dist_info)
    precision = plan_precision(runtime.precision, device=device)
    model = load_model(snapshot, dtype=precision.load_dtype)
    attention = choose_attention(
        runtime.attention,
        shape=AttentionShape.of(model),
        device=device,
        dtype=precision.autocast_dtype or precision.load_dtype,
    )
    use_attention(model, attention.kernel)
    log.info("%s", make_layers_lean(model).message())
    if runtime.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    left_out: tuple[str, ...] = ()
    if lora is not None:
        model = apply_lora(model, lora)
        if lora.target_modules == ["all-linear"]:
            left_out = tuple(unadapted_linears(model))
        fused = fuse_lora_updates(model)
        log.info("LoRA: %d adapted layers add their update into the base output in place (one addmm each)", fused)
        if precision.autocast_dtype is not None:
            # The fp32 adapters run under autocast on the input as it comes (bf16): no fp32 copy of it.
            keep_adapter_inputs_as_they_come(model)
    model.to(device)
    vocab_size = int(model.config.get_text_config().vocab_size)

    def probe(compiled_model: nn.Module) -> None:
        with precision.autocast():
            probe_pass(compiled_model, device=device, vocab_size=vocab_size)

    # The template's compile is for GPUs: on a CPU inductor's C++ build takes minutes for little gain (a tiny
    # model's local run would wait on it), so the run stays eager and says so once.
    on_gpu = device.type == "cuda"
    if runtime.compile and not on_gpu:
        log.info("torch.compile: the template asks for it on GPUs; this run on %s stays eager", device.type)
    compiled = compile_layers(
        model, requested=runtime.compile and on_gpu, device=device, vocab_size=vocab_size, probe=probe
    )
    wrapped = wrap_model(model, info=dist_info, strategy=runtime.strategy, device=device)
    return wrapped, TrainingSetup(
        device=device, precision=precision, lora=lora is not None, attention=attention, compiled=compiled,
        lora_left_out=left_out,
    )  # fmt: skip
