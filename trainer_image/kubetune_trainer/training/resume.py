"""Loading a checkpoint: the newest complete one (or a named step), verified, into a fresh run.

Only directories named `step-<N>` are candidates; hidden staging directories (`.step-<N>.partial`)
and directories without a COMPLETE marker are what a killed writer leaves, and are never read. A
marked checkpoint is loaded only if every file hashes to its marker and the marker lists every
rank's files (the RNG states of each rank that wrote it, and every shard file the DCP metadata
maps); one that does not is skipped with a warning and the next older one is tried.

The weights and optimizer state are loaded with torch.distributed.checkpoint into this run's own
layout: each rank reads only the slices it holds (its FSDP2 shards), whatever world size wrote
them, so a checkpoint of 4 ranks resumes on 2 or 8 (`runtime.reshardOnResume`). Before anything
is read, the checkpoint's tensor names and shapes are compared with this model's: a checkpoint of
another model is refused whole (CheckpointInvalid, a ValueError-class failure), never loaded half.

The pickled files (`scheduler.pt`, `rng-<rank>.pt`, the DCP `.metadata`) are our own artefacts,
read only after their hashes matched the marker; the first two with
`torch.load(weights_only=True)`, which unpickles only tensors and plain containers.
"""

from __future__ import annotations

import logging
import random
import warnings
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn
from torch.distributed.checkpoint.filesystem import FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, TensorStorageMetadata
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ..context import DistInfo
from ..errors import CheckpointInvalid, InvalidInput
from ..hashing import file_sha256
from .checkpoint import (
    COMPLETE_FILE,
    METADATA_FILE,
    MODEL_KEY,
    OPTIMIZER_KEY,
    SCHEDULER_FILE,
    SHARDS_DIR,
    STATE_FILE,
    STEP_PREFIX,
    CheckpointState,
    CompleteMarker,
    checkpoint_dir,
    rng_file,
    trainable_only,
)
from .checkpoint_location import RESUME_FIELD
from .distributed import all_reduce_sum, unwrap

log = logging.getLogger(__name__)

REQUIRED_FILES = (STATE_FILE, METADATA_FILE, SCHEDULER_FILE, rng_file(0))
PARTIAL = "its shard set is partial"


def marked_checkpoints(job_dir: Path) -> dict[int, Path]:
    """step -> directory of every `step-<N>` holding a COMPLETE marker (not yet verified)."""
    found: dict[int, Path] = {}
    if not job_dir.is_dir():
        return found
    for child in job_dir.iterdir():
        number = child.name.removeprefix(STEP_PREFIX)
        if child.name.startswith(STEP_PREFIX) and number.isdigit() and (child / COMPLETE_FILE).is_file():
            found[int(number)] = child
    return found


def verify(directory: Path, *, step: int) -> str | None:
    """None when `directory` is a complete checkpoint of `step`; otherwise what is wrong with it."""
    try:
        marker = CompleteMarker.model_validate_json((directory / COMPLETE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValidationError) as unreadable:
        return f"its {COMPLETE_FILE} marker is unreadable ({type(unreadable).__name__})"
    if marker.step != step:
        return f"its marker names step {marker.step}"
    missing = [name for name in REQUIRED_FILES if name not in marker.sha256]
    if missing:
        return f"its marker lists no {', '.join(missing)}"
    for name, expected in marker.sha256.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if file_sha256(path) != expected:
            return f"{name} does not match its sha256"
    return _every_rank_listed(directory, listed=set(marker.sha256))


def _every_rank_listed(directory: Path, *, listed: set[str]) -> str | None:
    """None when the marker lists every writer's files: each rank's RNG states and every shard file."""
    try:
        state = read_state(directory)
        metadata = read_metadata(directory)
    except (OSError, ValidationError, ValueError, EOFError) as unreadable:
        return f"its {STATE_FILE} or {METADATA_FILE} is unreadable ({type(unreadable).__name__})"
    wanted = {rng_file(rank) for rank in range(state.world_size)}
    wanted |= {f"{SHARDS_DIR}/{info.relative_path}" for info in (metadata.storage_data or {}).values()}
    absent = sorted(wanted - listed)
    if absent:
        return f"{PARTIAL}: the {state.world_size} rank(s) that wrote it left no {', '.join(absent[:5])} in its marker"
    return None


def read_metadata(directory: Path) -> Metadata:
    """The DCP metadata: which tensors the shards hold, their global shapes, and which file holds each slice."""
    return FileSystemReader(str(directory / SHARDS_DIR)).read_metadata()


def find_checkpoint(job_dir: Path, *, step: int | None, reference: str) -> Path | None:
    """The newest verified checkpoint in `job_dir` (None: there is none), or exactly `step`'s.

    A named step that is absent or incomplete is refused: resuming elsewhere would silently
    train from a different point than asked.
    """
    marked = marked_checkpoints(job_dir)
    if step is not None:
        directory = marked.get(step, checkpoint_dir(job_dir, step))
        problem = verify(directory, step=step) if step in marked else "it has no complete checkpoint there"
        if problem is not None and problem.startswith(PARTIAL):
            raise CheckpointInvalid(
                f"{RESUME_FIELD} {reference}: step {step} in {job_dir} is not loaded: {problem}.",
                reason="CheckpointShardsMissing",
                field=RESUME_FIELD,
                hint="Copy the checkpoint whole (every rank's files), or name another step.",
            )
        if problem is not None:
            raise InvalidInput(
                f"{RESUME_FIELD} {reference}: step {step} cannot be loaded from {job_dir}: {problem}.",
                reason="CheckpointNotFound",
                field=RESUME_FIELD,
                hint=f"Name a step that has a complete checkpoint ({_listing(marked)}), or <job> alone for the "
                "newest one.",
            )
        return directory
    for number in sorted(marked, reverse=True):
        problem = verify(marked[number], step=number)
        if problem is None:
            return marked[number]
        log.warning("checkpoint %s is skipped: %s", marked[number], problem)
    return None


def agreed_checkpoint(job_dir: Path, *, step: int | None, reference: str, dist_info: DistInfo) -> Path | None:
    """`find_checkpoint` decided by rank 0 (only it hashes the files), the same answer on every rank."""
    refusal: InvalidInput | CheckpointInvalid | None = None
    found: Path | None = None
    chosen = torch.zeros(dist_info.world_size, dtype=torch.float64)
    if dist_info.is_main:
        try:
            found = find_checkpoint(job_dir, step=step, reference=reference)
        except (InvalidInput, CheckpointInvalid) as refused:
            refusal = refused
        chosen[0] = -2 if refusal is not None else (-1 if found is None else int(found.name.removeprefix(STEP_PREFIX)))
    decided = int(all_reduce_sum(chosen)[0])
    if refusal is not None:
        raise refusal
    if decided == -2:
        raise InvalidInput(
            f"{RESUME_FIELD} {reference}: rank 0 refused the checkpoint (its log says why).",
            reason="CheckpointNotFound",
            field=RESUME_FIELD,
            hint="Name a step that has a complete checkpoint, or <job> alone for the newest one.",
        )
    if decided == -1:
        return None
    return found if found is not None else checkpoint_dir(job_dir, decided)


def read_state(directory: Path) -> CheckpointState:
    return CheckpointState.model_validate_json((directory / STATE_FILE).read_text(encoding="utf-8"))


def load_weights(directory: Path, *, model: nn.Module, state: CheckpointState, lora: bool) -> None:
    """The checkpoint's weights into `model`: all of them, or under LoRA the adapter onto the fresh base.

    Each rank reads only its own slices (resharded when the checkpoint's world size differs).
    """
    if state.lora != lora:
        held, wanted = ("a LoRA adapter", "the full model") if state.lora else ("full weights", "a LoRA adapter")
        raise InvalidInput(
            f"The checkpoint {directory} holds {held}, but this job trains {wanted}.",
            reason="CheckpointKindMismatch",
            field=RESUME_FIELD,
            hint="Set lora the way the checkpoint's job had it, or start from another checkpoint.",
        )
    inner = unwrap(model)
    weights: dict[str, Any] = dict(get_model_state_dict(inner))
    if lora:
        weights = trainable_only(inner, weights)
    _refuse_another_model(directory, read_metadata(directory), weights)
    _read_shards(directory, {MODEL_KEY: weights})
    set_model_state_dict(inner, weights, options=StateDictOptions(strict=not lora))


def load_training_state(
    directory: Path, *, model: nn.Module, optimizer: Optimizer, scheduler: LRScheduler, dist_info: DistInfo
) -> None:
    """Optimizer, schedule and this rank's random number generators, exactly as they were.

    A rank the checkpoint's run did not have (resumed on more processes) takes rank 0's RNG states.
    """
    inner = unwrap(model)
    # The optimizer's state as this run lays it out (its state initialised, sharded as the weights).
    optimizer_state = get_optimizer_state_dict(inner, optimizer)
    _read_shards(directory, {OPTIMIZER_KEY: optimizer_state})
    set_optimizer_state_dict(inner, optimizer, optimizer_state)
    scheduler.load_state_dict(_trusted_load(directory / SCHEDULER_FILE))
    own = directory / rng_file(dist_info.rank)
    rng = _trusted_load(own if own.is_file() else directory / rng_file(0))
    torch.set_rng_state(rng["torch"])
    random.setstate(_as_tuples(rng["python"]))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _read_shards(directory: Path, state: dict[str, Any]) -> None:
    """Fill `state` in place from the checkpoint's shards: each rank reads the slices it holds."""
    reader = FileSystemReader(str(directory / SHARDS_DIR))
    with warnings.catch_warnings():
        # One process, no group: DCP says so every time; it is the intent.
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp_load(state, storage_reader=reader, no_dist=not torch.distributed.is_initialized())


def _refuse_another_model(directory: Path, metadata: Metadata, weights: dict[str, Any]) -> None:
    """Refuse, before any tensor is read, a checkpoint whose weights differ from `weights` in name or shape."""
    prefix = f"{MODEL_KEY}."
    held = {
        name.removeprefix(prefix): tuple(entry.size)
        for name, entry in metadata.state_dict_metadata.items()
        if name.startswith(prefix) and isinstance(entry, TensorStorageMetadata)
    }
    wanted = {name: tuple(tensor.shape) for name, tensor in weights.items()}
    missing = sorted(set(wanted) - set(held))
    unexpected = sorted(set(held) - set(wanted))
    mismatched = [
        f"{name}: checkpoint {list(held[name])} vs model {list(shape)}"
        for name, shape in sorted(wanted.items())
        if name in held and held[name] != shape
    ]
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} tensor(s) of another shape ({'; '.join(mismatched[:5])})")
    if missing:
        problems.append(f"{len(missing)} tensor(s) of this model missing ({', '.join(missing[:5])})")
    if unexpected:
        problems.append(f"{len(unexpected)} tensor(s) this model lacks ({', '.join(unexpected[:5])})")
    if problems:
        raise _not_this_model(directory, "; ".join(problems))


def _trusted_load(path: Path) -> Any:
    """Our own pickled state: tensors and plain containers only (weights_only), never code."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _as_tuples(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_as_tuples(item) for item in value)
    return value


def _not_this_model(directory: Path, detail: str) -> CheckpointInvalid:
    return CheckpointInvalid(
        f"The checkpoint {directory} does not fit this model: {detail}.",
        reason="CheckpointDoesNotMatchModel",
        field=RESUME_FIELD,
        hint="Resume with the same model and LoRA settings (r, targetModules) the checkpoint was trained with.",
    )


def _listing(marked: dict[int, Path]) -> str:
    if not marked:
        return "there are none"
    return "complete steps: " + ", ".join(str(step) for step in sorted(marked))
