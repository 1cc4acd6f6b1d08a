"""The objective of a trainingMethod dpo run: its loss, its reference and what checkpoints keep.

- reference-free (or SimPO): no reference at all;
- LoRA: the model with its adapter disabled, in the same forward pass's step (no second copy);
- full fine-tuning: reference log-probabilities computed once, before the first step, from the
  weights training starts with; written into every checkpoint and read back on resume, so a
  resumed run never recomputes them from weights that have moved.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..context import DistInfo
from ..contract import DpoSettings
from ..data.preference_pairs import TokenizedPair
from .loop import Objective
from .precision import PrecisionPlan
from .preference_loss import (
    AdapterDisabledReference,
    NoReference,
    PrecomputedReference,
    PreferenceLoss,
    Reference,
)
from .reference_logps import compute_reference_logps, load_or_compute

log = logging.getLogger(__name__)

TRAIN_REFERENCE_FILE = "reference_logps.pt"
VALIDATION_REFERENCE_FILE = "reference_logps_validation.pt"


@dataclass(frozen=True)
class PreferenceRun:
    """The objective the loop takes, and the training loss whose metrics history the stage summarises."""

    objective: Objective
    loss: PreferenceLoss

    def summary(self, *, last_steps: int) -> dict[str, float]:
        """Means of the preference metrics over the last `last_steps` steps (the model card's metrics)."""
        recent = self.loss.history[-last_steps:] if last_steps > 0 else []
        if not recent:
            return {}
        return {
            "reward_accuracy": sum(m.reward_accuracy for m in recent) / len(recent),
            "reward_margin": sum(m.reward_margin for m in recent) / len(recent),
            "chosen_logps": sum(m.chosen_logps for m in recent) / len(recent),
            "rejected_logps": sum(m.rejected_logps for m in recent) / len(recent),
        }


def preference_objective(
    model: nn.Module,
    *,
    settings: DpoSettings,
    train_pairs: Sequence[TokenizedPair],
    validation_pairs: Sequence[TokenizedPair],
    lora: bool,
    pad_token_id: int,
    precision: PrecisionPlan,
    device: torch.device,
    dist_info: DistInfo,
    work_dir: Path,
    resumed_checkpoint: Path | None,
) -> PreferenceRun:
    """The DPO objective; computes (or loads) full fine-tuning's reference log-probabilities first."""
    if settings.reference_free or settings.simpo_gamma > 0:
        return _objective(settings, NoReference(), NoReference())
    if lora:
        return _objective(settings, AdapterDisabledReference(), AdapterDisabledReference())
    tables: list[PrecomputedReference] = []
    attachments: list[tuple[str, Path]] = []
    for name, pairs in ((TRAIN_REFERENCE_FILE, train_pairs), (VALIDATION_REFERENCE_FILE, validation_pairs)):
        kept = resumed_checkpoint / name if resumed_checkpoint is not None else None
        if resumed_checkpoint is not None and not (kept is not None and kept.is_file()):
            log.warning("checkpoint %s holds no %s: computing it from the resumed weights", resumed_checkpoint, name)
        table = load_or_compute(
            kept if kept is not None and kept.is_file() else None,
            pairs=len(pairs),
            compute=functools.partial(
                compute_reference_logps,
                model,
                pairs,
                pad_token_id=pad_token_id,
                precision=precision,
                device=device,
                dist_info=dist_info,
            ),
            save_to=work_dir / name,
            is_main=dist_info.is_main,
        )
        tables.append(PrecomputedReference(table))
        attachments.append((name, work_dir / name))
    return _objective(settings, tables[0], tables[1], attachments=tuple(attachments))


def _objective(
    settings: DpoSettings,
    train_reference: Reference,
    validation_reference: Reference,
    *,
    attachments: tuple[tuple[str, Path], ...] = (),
) -> PreferenceRun:
    training = PreferenceLoss(settings=settings, reference=train_reference)
    objective = Objective(
        loss=training,
        eval_loss=PreferenceLoss(settings=settings, reference=validation_reference),
        step_metrics=training.step_metrics,
        checkpoint_attachments=attachments,
    )
    return PreferenceRun(objective=objective, loss=training)
