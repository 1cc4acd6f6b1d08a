"""The summed token loss of a micro-batch, with the output head computed only where a label is due.

Masked prompt tokens, padding and each example's first token carry no label, yet a plain
forward computes vocabulary-wide logits for them too: on chat data that is a third of the output
head's work and of the cross-entropy. Passing the positions that precede a label as
`logits_to_keep` makes the model apply its head to those positions alone. The sum is the same as
`data.packing.summed_token_loss` over full logits: each kept position t is scored against the
label at t + 1, exactly as the shifted loss does.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from ..data.packing import ModelBatch
from ..data.tokenization import IGNORE_INDEX


def summed_label_loss(model: nn.Module, batch: ModelBatch) -> torch.Tensor:
    """Sum of the token losses of `batch` (divide by the step's label tokens for the mean)."""
    # Positions whose next token is a label in any row; rows share the sequence axis.
    keep = (batch.labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)
    logits = model(**batch.model_inputs(), logits_to_keep=keep).logits
    targets = batch.labels[:, keep + 1]
    return functional.cross_entropy(
        logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )
