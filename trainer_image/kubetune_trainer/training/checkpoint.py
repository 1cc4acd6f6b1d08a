"""Training checkpoints: weights, optimizer, scheduler, RNG and data position, complete or absent.

A checkpoint is a directory `step-<N>` holding:

    model.safetensors   the trainable weights (the adapter alone under LoRA)
    optimizer.pt        optimizer state          scheduler.pt  scheduler state
    rng-<rank>.pt       every rank's RNG states  state.json    step, epoch and data position

It is written into a hidden temporary directory beside its final place and renamed into place
only when every file is on disk, so a reader never sees half a checkpoint.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
)
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ..context import DistInfo
from .distributed import barrier, unwrap

STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"


class CheckpointState(BaseModel):
    """Where training stood when the checkpoint was taken."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: int = Field(ge=0, description="Optimizer steps completed.")
    epoch: int = Field(ge=0, description="Epoch the next step belongs to.")
    step_in_epoch: int = Field(ge=0, description="Optimizer steps of that epoch already done.")
    total_steps: int = Field(ge=0, description="Optimizer steps of the whole run.")
    world_size: int = Field(ge=1, description="Processes that trained; the data shards depend on it.")
    lora: bool = Field(description="Whether model.safetensors holds only a LoRA adapter.")


def checkpoint_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:08d}"


def save_checkpoint(
    root: Path,
    *,
    state: CheckpointState,
    model: nn.Module,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    dist_info: DistInfo,
) -> Path:
    """Write a checkpoint of every rank's training state; a collective, rank 0 writes the shared files."""
    final = checkpoint_dir(root, state.step)
    staging = root / f".{final.name}.partial"
    weights, optimizer_state = _full_states(model, optimizer, lora=state.lora)
    if dist_info.is_main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    barrier()
    torch.save(_rng_states(), staging / f"rng-{dist_info.rank}.pt")
    barrier()
    if dist_info.is_main:
        save_file(_unshared(weights), str(staging / MODEL_FILE), metadata={"format": "pt"})
        torch.save(optimizer_state, staging / "optimizer.pt")
        torch.save(scheduler.state_dict(), staging / "scheduler.pt")
        (staging / STATE_FILE).write_text(state.model_dump_json(indent=2), encoding="utf-8")
        _fsync_dir(staging)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        _fsync_dir(root)
    barrier()
    return final


def _full_states(model: nn.Module, optimizer: Optimizer, *, lora: bool) -> tuple[dict[str, torch.Tensor], Any]:
    """Unsharded weights and optimizer state (gathered to every rank under FSDP: a collective)."""
    inner = unwrap(model)
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights: dict[str, torch.Tensor] = dict(get_model_state_dict(inner, options=options))  # type: ignore[arg-type]
    if lora:
        # Only what trains: the frozen base is the downloaded snapshot and needs no copy.
        trainable = {name for name, p in inner.named_parameters() if p.requires_grad}
        weights = {name: tensor for name, tensor in weights.items() if name in trainable}
    return weights, get_optimizer_state_dict(inner, optimizer, options=options)


def _unshared(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing storage (tied embeddings): give each its own copy."""
    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for name, value in weights.items():
        tensor = value.detach().cpu().contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        out[name] = tensor.clone() if pointer in seen else tensor
        seen.add(pointer)
    return out


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _fsync_dir(path: Path) -> None:
    for child in path.iterdir() if path.is_dir() else ():
        if child.is_file():
            with child.open("rb") as handle:
                os.fsync(handle.fileno())
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
