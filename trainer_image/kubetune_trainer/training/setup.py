"""The model as training needs it: loaded from the local snapshot, LoRA-wrapped, placed, distributed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM

from ..context import DistInfo
from ..contract import LoraConfig, RuntimeSettings
from ..errors import CheckpointInvalid
from .distributed import pick_device, wrap_model
from .lora import apply_lora
from .precision import PrecisionPlan, plan_precision


@dataclass
class TrainingSetup:
    """What Initialization hands to Training besides the model itself."""

    device: torch.device
    precision: PrecisionPlan
    lora: bool


def load_model(snapshot: Path, *, dtype: torch.dtype) -> Any:
    """The causal LM in `snapshot` (a local directory: a repo id would probe the network)."""
    loaded: Any = AutoModelForCausalLM.from_pretrained(
        str(snapshot),
        trust_remote_code=False,
        use_safetensors=True,
        dtype=dtype,
        output_loading_info=True,
    )
    model, info = loaded
    # transformers fills missing weights with random ones and only logs it; training that would
    # quietly fine-tune noise.
    missing = sorted(info.get("missing_keys", []))
    if missing or info.get("mismatched_keys"):
        raise CheckpointInvalid(
            f"The weights in {snapshot.name} do not match its config.json: missing {missing[:5]}, "
            f"mismatched {list(info.get('mismatched_keys', []))[:5]}.",
            reason="WeightsDoNotMatchConfig",
            field="fromHfModel",
            hint="Use a model repo whose safetensors files were saved from the config it ships.",
        )
    # With the KV cache on, transformers cannot see packed sequences' boundaries and lets them
    # attend to each other; training never uses the cache anyway.
    model.config.use_cache = False
    return model


def prepare_model(
    snapshot: Path, *, runtime: RuntimeSettings, lora: LoraConfig | None, dist_info: DistInfo
) -> tuple[nn.Module, TrainingSetup]:
    """Load, optionally checkpoint activations and add LoRA, move to the device, wrap for DDP/FSDP."""
    device = pick_device(dist_info)
    precision = plan_precision(runtime.precision, device=device)
    model = load_model(snapshot, dtype=precision.load_dtype)
    if runtime.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if lora is not None:
        model = apply_lora(model, lora)
    model.to(device)
    wrapped = wrap_model(model, info=dist_info, strategy=runtime.strategy, device=device)
    return wrapped, TrainingSetup(device=device, precision=precision, lora=lora is not None)
