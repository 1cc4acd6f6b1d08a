"""A training checkpoint -> a folder `from_pretrained` loads: what `kubetune jobs download --checkpoint-step` writes.

A `step-<N>` checkpoint holds the trainable weights only (the adapter alone under LoRA), without
config or tokenizer. The export rebuilds the model as training held it, from the base snapshot
the job trained (its config, tokenizer and chat template) and the checkpoint's weights, and saves:

- full fine-tuning: the model, config.json, generation_config.json, the tokenizer;
- LoRA, `merged=True`: the base with the adapter merged in, as a plain model;
- LoRA, `merged=False`: the adapter (adapter_config.json naming the base repo and commit,
  adapter_model.safetensors) with the tokenizer.

The checkpoint's weights are read by `training.resume.load_weights`, the loader a resumed run
uses: a change of the checkpoint format (sharded checkpoints) changes that one function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer

from .contract import LoraConfig
from .errors import CheckpointInvalid
from .training.checkpoint import checkpoint_dir
from .training.lora import apply_lora, point_adapter_at
from .training.resume import load_weights, read_state, verify
from .training.setup import load_model


def step_folder_name(step: int) -> str:
    """The name of step `step`'s folder under a job's checkpoint directory."""
    return checkpoint_dir(Path(), step).name


def export_checkpoint(
    checkpoint: Path,
    target: Path,
    *,
    base_snapshot: Path,
    base_repo: str,
    base_revision: str | None,
    lora: LoraConfig | None,
    merged: bool = True,
) -> None:
    """Write checkpoint folder `checkpoint` as a loadable model (or adapter) folder `target`."""
    state = read_state(checkpoint)
    problem = verify(checkpoint, step=state.step)
    if problem is not None:
        raise CheckpointInvalid(
            f"the checkpoint {checkpoint} cannot be exported: {problem}",
            reason="CheckpointIncomplete",
            hint="download another step (`kubetune jobs checkpoints <job>` lists them)",
        )
    if state.lora and lora is None:
        raise CheckpointInvalid(
            f"the checkpoint {checkpoint} holds a LoRA adapter but the job records no LoRA settings",
            reason="CheckpointKindMismatch",
        )
    model: Any = load_model(base_snapshot, dtype=_saved_dtype(base_snapshot))
    if state.lora:
        assert lora is not None
        model = apply_lora(model, lora)
    load_weights(checkpoint, model=model, state=state, lora=state.lora)
    model.config.use_cache = True  # training turned it off; generation wants it
    target.mkdir(parents=True, exist_ok=True)
    if state.lora and merged:
        model = model.merge_and_unload()
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(str(base_snapshot)).save_pretrained(target)
    if state.lora and not merged:
        point_adapter_at(target, repo=base_repo, revision=base_revision)


def _saved_dtype(snapshot: Path) -> torch.dtype:
    """The dtype the base model is stored in, so an exported model is the size of the base."""
    config = AutoConfig.from_pretrained(str(snapshot), trust_remote_code=False)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32
