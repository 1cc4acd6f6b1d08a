"""What a training step minimises per micro-batch: a loss summed over its units (tokens, or pairs).

SFT sums token losses (`training.loss.summed_label_loss`) and the step divides by its label
tokens; DPO sums pair losses (`training.preference_loss.PreferenceLoss`) and the step divides by
its pairs (a pair's `label_tokens` is 1). The step, the accumulation and the evaluation are the
same code for both.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from ..data.packing import ModelBatch


class MicroBatchLoss(Protocol):
    """A micro-batch's loss, summed over its units: the step divides by the units of the whole step."""

    def __call__(self, model: nn.Module, batch: ModelBatch, /) -> torch.Tensor: ...
