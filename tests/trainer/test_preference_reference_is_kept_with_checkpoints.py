"""Full-fine-tuning DPO computes its reference log-probabilities once; a resume reads them back, never recomputes.

The reference is the model as training starts. A resumed run's weights have moved, so computing
the reference again would change the objective mid-run: the table travels in every checkpoint
(hashed with its other files) and the resumed run loads it without a single forward pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from kubetune_trainer.context import DistInfo
from kubetune_trainer.contract import DpoSettings
from kubetune_trainer.data.preference_pairs import TokenizedPair
from kubetune_trainer.data.tokenization import IGNORE_INDEX, TokenizedExample
from kubetune_trainer.training.checkpoint import CheckpointState, save_checkpoint
from kubetune_trainer.training.precision import PrecisionPlan
from kubetune_trainer.training.preference_loss import NoReference, PrecomputedReference
from kubetune_trainer.training.preference_setup import (
    TRAIN_REFERENCE_FILE,
    VALIDATION_REFERENCE_FILE,
    PreferenceRun,
    preference_objective,
)
from kubetune_trainer.training.resume import verify

from .test_preference_loss_matches_the_papers import random_pairs, reference_table, tiny_llama

# Real (tiny, random) transformers models built in this process: integration, not unit.
pytestmark = pytest.mark.integration

DPO = DpoSettings()
CPU = PrecisionPlan(load_dtype=torch.float32, autocast_dtype=None, device_type="cpu")


class NeverRun(nn.Module):
    """A model that fails if anything runs it: the resume must not."""

    def forward(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("the reference was recomputed")


def _objective(
    model: nn.Module,
    pairs: list[TokenizedPair],
    *,
    work: Path,
    resumed: Path | None,
    settings: DpoSettings = DPO,
) -> PreferenceRun:
    return preference_objective(
        model,
        settings=settings,
        train_pairs=pairs,
        validation_pairs=pairs[:2],
        lora=False,
        pad_token_id=0,
        precision=CPU,
        device=torch.device("cpu"),
        dist_info=DistInfo(),
        work_dir=work,
        resumed_checkpoint=resumed,
    )


def test_the_table_is_computed_before_training_from_the_starting_weights(tmp_path: Path) -> None:
    model = tiny_llama()
    pairs = random_pairs(5, seed=1)
    run = _objective(model, pairs, work=tmp_path, resumed=None)
    reference = run.loss.reference
    assert isinstance(reference, PrecomputedReference)
    assert torch.allclose(reference.table, reference_table(model, pairs), atol=1e-6)
    assert dict(run.objective.checkpoint_attachments) == {
        TRAIN_REFERENCE_FILE: tmp_path / TRAIN_REFERENCE_FILE,
        VALIDATION_REFERENCE_FILE: tmp_path / VALIDATION_REFERENCE_FILE,
    }


def test_a_checkpoint_carries_the_table_and_a_resume_loads_it_without_a_forward_pass(tmp_path: Path) -> None:
    model = tiny_llama().float()
    pairs = random_pairs(5, seed=2)
    run = _objective(model, pairs, work=tmp_path / "work", resumed=None)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    state = CheckpointState(step=3, epoch=0, step_in_epoch=3, total_steps=9, world_size=1, lora=False)
    saved = save_checkpoint(
        tmp_path / "ckpt",
        state=state,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        dist_info=DistInfo(),
        attachments=dict(run.objective.checkpoint_attachments),
    ).directory
    assert verify(saved, step=3) is None  # the tables are hashed into the COMPLETE marker
    assert (saved / TRAIN_REFERENCE_FILE).is_file()

    resumed = _objective(NeverRun(), pairs, work=tmp_path / "work-2", resumed=saved)
    reference = resumed.loss.reference
    assert isinstance(reference, PrecomputedReference)
    first = run.loss.reference
    assert isinstance(first, PrecomputedReference)
    assert torch.equal(reference.table, first.table)


def test_reference_free_and_simpo_need_no_table(tmp_path: Path) -> None:
    pairs = [
        TokenizedPair(
            chosen=TokenizedExample(input_ids=[1, 2, 3], labels=[IGNORE_INDEX, 2, 3]),
            rejected=TokenizedExample(input_ids=[1, 2, 4], labels=[IGNORE_INDEX, 2, 4]),
            index=0,
        )
    ]
    for settings in (DpoSettings(reference_free=True), DpoSettings(simpo_gamma=0.5)):
        run = _objective(NeverRun(), pairs, work=tmp_path, resumed=None, settings=settings)
        assert isinstance(run.loss.reference, NoReference)
        assert run.objective.checkpoint_attachments == ()
