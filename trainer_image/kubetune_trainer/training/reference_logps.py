"""The reference log-probabilities of full-fine-tuning DPO: one pass before the first step, kept.

The reference model of DPO is the model as training starts. With LoRA it is the same model with
the adapter disabled; with full fine-tuning the weights change, so each pair's (chosen, rejected)
log-probabilities are computed once, before the first optimizer step, and kept in a [pairs, 2]
table: no second copy of the model is held. The table is written into every checkpoint
(`training.preference_setup`) and a resumed run loads it instead of recomputing it from weights
that have since moved.

Each rank computes every W-th pair and the table is summed over ranks; under FSDP every forward is
a collective, so every rank runs as many passes as the busiest one (the extra passes count for
nothing).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from ..context import DistInfo
from ..data.preference_pairs import TokenizedPair, collate_pairs
from .distributed import all_reduce_max, all_reduce_sum
from .precision import PrecisionPlan
from .preference_loss import sequence_logps

log = logging.getLogger(__name__)

PAIRS_PER_PASS = 4


def compute_reference_logps(
    model: nn.Module,
    pairs: Sequence[TokenizedPair],
    *,
    pad_token_id: int,
    precision: PrecisionPlan,
    device: torch.device,
    dist_info: DistInfo,
) -> torch.Tensor:
    """[pairs, 2] fp64: every pair's (chosen, rejected) summed log-probability under `model` as it is."""
    table = torch.zeros((len(pairs), 2), dtype=torch.float64)
    mine = list(pairs[dist_info.rank :: dist_info.world_size])
    chunks = [mine[at : at + PAIRS_PER_PASS] for at in range(0, len(mine), PAIRS_PER_PASS)]
    passes = int(all_reduce_max(torch.tensor([len(chunks)], dtype=torch.float64))[0])
    was_training = model.training
    model.eval()
    # Kept on the device and copied to the host once: a copy per pass would make the host wait for each.
    found: list[tuple[list[int], torch.Tensor]] = []
    with torch.no_grad():
        for index in range(passes):
            if not chunks:
                break
            chunk = chunks[min(index, len(chunks) - 1)]
            batch = collate_pairs(chunk, pad_token_id=pad_token_id).to(device)
            with precision.autocast():
                summed, _ = sequence_logps(model, batch)
            if index < len(chunks):
                found.append((list(batch.pair_indices), summed.view(-1, 2).double()))
    if found:
        rows = torch.cat([values for _, values in found]).cpu()
        table[[i for indices, _ in found for i in indices]] = rows
    model.train(was_training)
    return all_reduce_sum(table)


def load_or_compute(
    kept: Path | None,
    *,
    pairs: int,
    compute: Callable[[], torch.Tensor],
    save_to: Path,
    is_main: bool,
) -> torch.Tensor:
    """The table in `kept` (a resumed checkpoint's copy) when it fits these pairs, else `compute()`.

    Rank 0 writes the table to `save_to`, which every checkpoint then carries.
    """
    table: torch.Tensor | None = None
    if kept is not None:
        loaded = torch.load(kept, weights_only=True)
        if isinstance(loaded, torch.Tensor) and tuple(loaded.shape) == (pairs, 2):
            log.warning("reference log-probabilities of %d pairs loaded from %s", pairs, kept)
            table = loaded
    if table is None:
        table = compute()
    if is_main:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        partial = save_to.with_suffix(".partial")
        torch.save(table, partial)
        os.replace(partial, save_to)
    return table
