"""Training checkpoints: sharded weights and optimizer, scheduler, RNG and data position, complete or absent.

A checkpoint is a directory `step-<N>` holding:

    shards/             torch.distributed.checkpoint (DCP): the trainable weights (the adapter
                        alone under LoRA) and the optimizer state, each rank writing its own
                        `__<rank>_<n>.distcp` file, rank 0 the `.metadata` that maps them
    scheduler.pt        scheduler state            rng-<rank>.pt  each rank's RNG states
    state.json          step, epoch, data position and the world size that wrote it
    COMPLETE            written last: the sha256 of every file above, every rank's included

No rank ever holds the full state: under FSDP2 each rank writes the shards it owns (DTensors), and
under DDP the replicated tensors are spread over the ranks' files by DCP's planner. Loading
reshards (`training.resume`): a checkpoint of 4 ranks loads on 2 or 8.

Every rank writes into a hidden staging directory `.step-<N>.partial` beside its final place and
hashes what it wrote; the hashes are gathered to rank 0, which renames the staging directory into
place and then writes the COMPLETE marker (itself through a temporary file and a rename). A
directory without a marker, or whose files do not hash to it, is never loaded, so a checkpoint is
complete or absent whenever any writer is killed. On nodes that do not share rank 0's filesystem
(an s3:// location, each node with its own work directory), each rank copies its own files to the
store (`CheckpointMirror`) before rank 0 copies the marker, last.
"""

from __future__ import annotations

import os
import random
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.distributed.checkpoint.filesystem import FileSystemWriter
from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ..context import DistInfo
from ..errors import InfrastructureFailure
from ..hashing import file_sha256
from .distributed import barrier, unwrap

STATE_FILE = "state.json"
SHARDS_DIR = "shards"
METADATA_FILE = f"{SHARDS_DIR}/.metadata"
SCHEDULER_FILE = "scheduler.pt"
COMPLETE_FILE = "COMPLETE"
STEP_PREFIX = "step-"
MODEL_KEY = "model"
OPTIMIZER_KEY = "optimizer"
"""The two top-level keys of the DCP state dict: `model.<fqn>` and `optimizer.<...>` in its metadata."""


def rng_file(rank: int) -> str:
    return f"rng-{rank}.pt"


class CompleteMarker(BaseModel):
    """The last file of a checkpoint: its presence says the rest is on disk, its hashes say intact."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: int = Field(ge=0, description="The checkpoint's step, as in its directory name.")
    sha256: dict[str, str] = Field(
        description="Path relative to the checkpoint directory -> hex sha256 of every other file in it."
    )


class CheckpointState(BaseModel):
    """Where training stood when the checkpoint was taken."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: int = Field(ge=0, description="Optimizer steps completed.")
    epoch: int = Field(ge=0, description="Epoch the next step belongs to.")
    step_in_epoch: int = Field(ge=0, description="Optimizer steps of that epoch already done.")
    total_steps: int = Field(ge=0, description="Optimizer steps of the whole run.")
    world_size: int = Field(ge=1, description="Processes that trained and wrote the shards.")
    lora: bool = Field(description="Whether the shards hold only a LoRA adapter's weights.")
    eval_losses: list[tuple[int, float]] = Field(
        default_factory=list, description="(step, eval loss) so far; step 0 is the evaluation before training."
    )
    trained_tokens: int = Field(0, ge=0, description="Tokens trained so far, for tokens/s after a resume.")
    training_seconds: float = Field(0.0, ge=0.0, description="Seconds spent in steps so far.")


class CheckpointMirror(Protocol):
    """A second home for checkpoints (an object store): files copied there as they are written."""

    def put(self, directory: Path, names: Sequence[str], *, step_name: str) -> None:
        """Copy `directory/<name>` for each name to `<store>/<step_name>/<name>`, in order."""


@dataclass(frozen=True)
class SavedCheckpoint:
    directory: Path
    files: dict[str, str]
    """Every file of the checkpoint (relative path -> sha256), as its marker lists them."""


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
    mirror: CheckpointMirror | None = None,
    attachments: Mapping[str, Path] | None = None,
) -> SavedCheckpoint:
    """Write a checkpoint of every rank's training state: a collective, each rank writes its own shards.

    `attachments` (name -> file) are copied in by rank 0 and hashed with the rest: data a resume must
    find as it was, such as DPO's reference log-probabilities.
    """
    final = checkpoint_dir(root, state.step)
    staging = root / f".{final.name}.partial"
    if dist_info.is_main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    barrier()
    # A node without rank 0's filesystem makes its own staging directory for its ranks' files.
    staging.mkdir(parents=True, exist_ok=True)
    model_state, optimizer_state = sharded_states(model, optimizer, lora=state.lora)
    writer = FileSystemWriter(str(staging / SHARDS_DIR), sync_files=True)
    with warnings.catch_warnings():
        # One process, no group: DCP says so every time; it is the intent.
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp_save(
            {MODEL_KEY: model_state, OPTIMIZER_KEY: optimizer_state},
            storage_writer=writer,
            no_dist=not dist.is_initialized(),
        )
    del model_state, optimizer_state
    torch.save(_rng_states(), staging / rng_file(dist_info.rank))
    if dist_info.is_main:
        torch.save(scheduler.state_dict(), staging / SCHEDULER_FILE)
        (staging / STATE_FILE).write_text(state.model_dump_json(indent=2), encoding="utf-8")
        for name, source in (attachments or {}).items():
            shutil.copyfile(source, staging / name)
    mine = _written_by(staging, rank=dist_info.rank, main=dist_info.is_main, attachments=list(attachments or {}))
    _fsync_files(staging, mine)
    hashes = {name: file_sha256(staging / name) for name in mine}
    failure: str | None = None
    if mirror is not None:
        try:
            mirror.put(staging, mine, step_name=final.name)
        except InfrastructureFailure as failed:
            failure = failed.message
    every = _gathered(hashes, failure, dist_info=dist_info)
    decided: list[Any] = [None, hashes]  # (failure, every file's hash): the same length on every rank
    if dist_info.is_main:
        files = {name: digest for part, _ in every for name, digest in part.items()}
        problems = [problem for _, problem in every if problem is not None]
        decided[0] = problems[0] if problems else None
        if not problems:
            _publish(staging, final, root=root, step=state.step, files=files)
            if mirror is not None:
                try:
                    mirror.put(final, [COMPLETE_FILE], step_name=final.name)
                except InfrastructureFailure as failed:
                    decided[0] = failed.message
        decided[1] = files
    if dist.is_initialized():
        dist.broadcast_object_list(decided, src=0)
    if staging.exists() and dist_info.local_rank == 0 and not dist_info.is_main:
        # This node's part of a checkpoint whose directory lives on rank 0's filesystem (and in the store).
        shutil.rmtree(staging, ignore_errors=True)
    if decided[0] is not None:
        raise InfrastructureFailure(
            f"checkpoint {final.name} was not completed: {decided[0]}",
            reason="CheckpointUploadFailed",
            hint="Check the bucket of checkpoint.uri exists and the pod's S3 credentials may write to it.",
        )
    return SavedCheckpoint(directory=final, files=dict(decided[1]))


def sharded_states(model: nn.Module, optimizer: Optimizer, *, lora: bool) -> tuple[dict[str, Any], Any]:
    """This rank's share of the weights and optimizer state, never gathered (DTensors under FSDP2)."""
    inner = unwrap(model)
    weights: dict[str, Any] = dict(get_model_state_dict(inner))
    if lora:
        weights = trainable_only(inner, weights)
    return weights, get_optimizer_state_dict(inner, optimizer)


def trainable_only(model: nn.Module, weights: dict[str, Any]) -> dict[str, Any]:
    """Only what trains: under LoRA the frozen base is the downloaded snapshot and needs no copy."""
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    return {name: tensor for name, tensor in weights.items() if name in trainable}


def write_complete_marker(directory: Path, *, step: int, files: dict[str, str] | None = None) -> None:
    """Write `directory`'s COMPLETE marker, atomically: the checkpoint's last write.

    `files` (relative path -> sha256) are the hashes the writers computed; without them every file
    under `directory` is hashed here.
    """
    if files is None:
        files = {
            path.relative_to(directory).as_posix(): file_sha256(path)
            for path in sorted(directory.rglob("*"))
            if path.is_file() and path.name != COMPLETE_FILE
        }
    staging = directory / f".{COMPLETE_FILE}.partial"
    with staging.open("w", encoding="utf-8") as handle:
        handle.write(CompleteMarker(step=step, sha256=dict(sorted(files.items()))).model_dump_json(indent=2))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, directory / COMPLETE_FILE)
    _fsync_directory(directory)


def _written_by(staging: Path, *, rank: int, main: bool, attachments: Sequence[str] = ()) -> list[str]:
    """The files this rank wrote: its DCP shard files and RNG states; rank 0 also the shared files."""
    shards = sorted(f"{SHARDS_DIR}/{p.name}" for p in (staging / SHARDS_DIR).glob(f"__{rank}_*.distcp"))
    shared = [METADATA_FILE, SCHEDULER_FILE, STATE_FILE, *attachments] if main else []
    return [*shards, rng_file(rank), *shared]


def _gathered(
    hashes: dict[str, str], failure: str | None, *, dist_info: DistInfo
) -> list[tuple[dict[str, str], str | None]]:
    """Every rank's (file hashes, copy failure) on rank 0 (a collective; empty elsewhere)."""
    if dist_info.world_size == 1 or not dist.is_initialized():
        return [(hashes, failure)]
    gathered: list[Any] | None = [None] * dist_info.world_size if dist_info.is_main else None
    dist.gather_object((hashes, failure), gathered, dst=0)
    return list(gathered) if gathered is not None else []


def _publish(staging: Path, final: Path, *, root: Path, step: int, files: dict[str, str]) -> None:
    """Rename the written checkpoint into place, then mark it complete (rank 0)."""
    _fsync_directory(staging / SHARDS_DIR)
    _fsync_directory(staging)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    _fsync_directory(root)
    write_complete_marker(final, step=step, files=files)


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _fsync_files(directory: Path, names: Sequence[str]) -> None:
    for name in names:
        with (directory / name).open("rb") as handle:
            os.fsync(handle.fileno())


def _fsync_directory(path: Path) -> None:
    """Make a rename or a new entry in `path` durable: the directory itself is fsynced."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
