"""Training checkpoints: weights, optimizer, scheduler, RNG and data position, complete or absent.

A checkpoint is a directory `step-<N>` holding:

    model.safetensors   the trainable weights (the adapter alone under LoRA)
    optimizer.pt        optimizer state          scheduler.pt  scheduler state
    rng-<rank>.pt       every rank's RNG states  state.json    step, epoch and data position
    COMPLETE            written last: the sha256 of every file above

It is written into a hidden temporary directory beside its final place, fsynced and renamed into
place; then the COMPLETE marker is written (itself through a temporary file and a rename). A
directory without a marker, or whose files do not hash to it, is never loaded
(`training.resume`), so a checkpoint is complete or absent whenever the writer is killed.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Mapping
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
from ..hashing import file_sha256
from .distributed import barrier, unwrap

STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
COMPLETE_FILE = "COMPLETE"
STEP_PREFIX = "step-"


def rng_file(rank: int) -> str:
    return f"rng-{rank}.pt"


class CompleteMarker(BaseModel):
    """The last file of a checkpoint: its presence says the rest is on disk, its hashes say intact."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: int = Field(ge=0, description="The checkpoint's step, as in its directory name.")
    sha256: dict[str, str] = Field(description="File name -> hex sha256 of every other file in the directory.")


class CheckpointState(BaseModel):
    """Where training stood when the checkpoint was taken."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: int = Field(ge=0, description="Optimizer steps completed.")
    epoch: int = Field(ge=0, description="Epoch the next step belongs to.")
    step_in_epoch: int = Field(ge=0, description="Optimizer steps of that epoch already done.")
    total_steps: int = Field(ge=0, description="Optimizer steps of the whole run.")
    world_size: int = Field(ge=1, description="Processes that trained; the data shards depend on it.")
    lora: bool = Field(description="Whether model.safetensors holds only a LoRA adapter.")
    eval_losses: list[tuple[int, float]] = Field(
        default_factory=list, description="(step, eval loss) so far; step 0 is the evaluation before training."
    )
    trained_tokens: int = Field(0, ge=0, description="Tokens trained so far, for tokens/s after a resume.")
    training_seconds: float = Field(0.0, ge=0.0, description="Seconds spent in steps so far.")


def checkpoint_dir(root: Path, step: int) -> Path:
    return root / f"{STEP_PREFIX}{step:08d}"


def save_checkpoint(
    root: Path,
    *,
    state: CheckpointState,
    model: nn.Module,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    dist_info: DistInfo,
    attachments: Mapping[str, Path] | None = None,
) -> Path:
    """Write a checkpoint of every rank's training state; a collective, rank 0 writes the shared files.

    `attachments` (name -> file) are copied in and hashed with the rest: data a resume must find
    as it was, such as DPO's reference log-probabilities.
    """
    final = checkpoint_dir(root, state.step)
    staging = root / f".{final.name}.partial"
    weights, optimizer_state = _full_states(model, optimizer, lora=state.lora)
    # Rank 0 writes every rank's RNG states: on several nodes without a shared filesystem (an
    # s3:// location) the other nodes have no staging directory, and the copy rank 0 pushes to
    # the store must hold every rank's file for each node to resume from it.
    rng_states = _every_ranks_rng_states(dist_info)
    if dist_info.is_main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for rank, states in enumerate(rng_states):
            torch.save(states, staging / rng_file(rank))
        save_file(_unshared(weights), str(staging / MODEL_FILE), metadata={"format": "pt"})
        torch.save(optimizer_state, staging / OPTIMIZER_FILE)
        torch.save(scheduler.state_dict(), staging / SCHEDULER_FILE)
        (staging / STATE_FILE).write_text(state.model_dump_json(indent=2), encoding="utf-8")
        for name, source in (attachments or {}).items():
            shutil.copyfile(source, staging / name)
        _fsync_files(staging)
        _fsync_directory(staging)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        _fsync_directory(root)
        write_complete_marker(final, step=state.step)
    barrier()
    return final


def write_complete_marker(directory: Path, *, step: int) -> None:
    """Hash every file of `directory` into its COMPLETE marker, atomically: the checkpoint's last write."""
    hashes = {child.name: file_sha256(child) for child in sorted(directory.iterdir()) if child.is_file()}
    hashes.pop(COMPLETE_FILE, None)
    staging = directory / f".{COMPLETE_FILE}.partial"
    with staging.open("w", encoding="utf-8") as handle:
        handle.write(CompleteMarker(step=step, sha256=hashes).model_dump_json(indent=2))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, directory / COMPLETE_FILE)
    _fsync_directory(directory)


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


def _every_ranks_rng_states(dist_info: DistInfo) -> list[dict[str, Any]]:
    """Every rank's RNG states, by rank, on rank 0 (a collective; empty elsewhere)."""
    mine = _rng_states()
    if dist_info.world_size == 1 or not torch.distributed.is_initialized():
        return [mine]
    gathered: list[Any] | None = [None] * dist_info.world_size if dist_info.is_main else None
    torch.distributed.gather_object(mine, gathered, dst=0)
    return list(gathered) if gathered is not None else []


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _fsync_files(path: Path) -> None:
    for child in path.iterdir():
        if child.is_file():
            with child.open("rb") as handle:
                os.fsync(handle.fileno())


def _fsync_directory(path: Path) -> None:
    """Make a rename or a new entry in `path` durable: the directory itself is fsynced."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
