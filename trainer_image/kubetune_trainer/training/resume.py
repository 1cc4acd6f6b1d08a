"""Loading a checkpoint: the newest complete one (or a named step), verified, into a fresh run.

Only directories named `step-<N>` are candidates; hidden staging directories (`.step-<N>.partial`)
and directories without a COMPLETE marker are what a killed writer leaves, and are never read. A
marked checkpoint is loaded only if every file hashes to its marker; one that does not is skipped
with a warning and the next older one is tried.

The pickled files (`optimizer.pt`, `scheduler.pt`, `rng-<rank>.pt`) are our own artefacts, read
with `torch.load(weights_only=True)`, which unpickles only tensors and plain containers; the
weights are safetensors.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors.torch import load_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ..context import DistInfo
from ..errors import CheckpointInvalid, InvalidInput
from ..hashing import file_sha256
from .checkpoint import (
    COMPLETE_FILE,
    MODEL_FILE,
    OPTIMIZER_FILE,
    SCHEDULER_FILE,
    STATE_FILE,
    STEP_PREFIX,
    CheckpointState,
    CompleteMarker,
    checkpoint_dir,
    rng_file,
)
from .checkpoint_location import RESUME_FIELD
from .distributed import all_reduce_sum, unwrap

log = logging.getLogger(__name__)

REQUIRED_FILES = (STATE_FILE, MODEL_FILE, OPTIMIZER_FILE, SCHEDULER_FILE, rng_file(0))


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
    return None


def find_checkpoint(job_dir: Path, *, step: int | None, reference: str) -> Path | None:
    """The newest verified checkpoint in `job_dir` (None: there is none), or exactly `step`'s.

    A named step that is absent or incomplete is refused: resuming elsewhere would silently
    train from a different point than asked.
    """
    marked = marked_checkpoints(job_dir)
    if step is not None:
        directory = marked.get(step, checkpoint_dir(job_dir, step))
        problem = verify(directory, step=step) if step in marked else "it has no complete checkpoint there"
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
    refusal: InvalidInput | None = None
    found: Path | None = None
    chosen = torch.zeros(dist_info.world_size, dtype=torch.float64)
    if dist_info.is_main:
        try:
            found = find_checkpoint(job_dir, step=step, reference=reference)
        except InvalidInput as refused:
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
    """The checkpoint's weights into `model`: all of them, or under LoRA the adapter onto the fresh base."""
    if state.lora != lora:
        held, wanted = ("a LoRA adapter", "the full model") if state.lora else ("full weights", "a LoRA adapter")
        raise InvalidInput(
            f"The checkpoint {directory} holds {held}, but this job trains {wanted}.",
            reason="CheckpointKindMismatch",
            field=RESUME_FIELD,
            hint="Set lora the way the checkpoint's job had it, or start from another checkpoint.",
        )
    inner = unwrap(model)
    weights: dict[str, Any] = load_file(str(directory / MODEL_FILE))
    try:
        keys = set_model_state_dict(inner, weights, options=StateDictOptions(full_state_dict=True, strict=not lora))
    except RuntimeError as mismatch:
        raise _not_this_model(directory, str(mismatch)) from None
    trainable = {name for name, p in inner.named_parameters() if p.requires_grad}
    missing_trainable = sorted(set(keys.missing_keys) & trainable)
    if keys.unexpected_keys or missing_trainable:
        raise _not_this_model(
            directory, f"unexpected {sorted(keys.unexpected_keys)[:5]}, missing {missing_trainable[:5]}"
        )


def load_training_state(
    directory: Path, *, model: nn.Module, optimizer: Optimizer, scheduler: LRScheduler, dist_info: DistInfo
) -> None:
    """Optimizer, schedule and this rank's random number generators, exactly as they were."""
    inner = unwrap(model)
    optimizer_state = _trusted_load(directory / OPTIMIZER_FILE)
    set_optimizer_state_dict(inner, optimizer, optimizer_state, options=StateDictOptions(full_state_dict=True))
    scheduler.load_state_dict(_trusted_load(directory / SCHEDULER_FILE))
    rng = _trusted_load(directory / rng_file(dist_info.rank))
    torch.set_rng_state(rng["torch"])
    random.setstate(_as_tuples(rng["python"]))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


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
