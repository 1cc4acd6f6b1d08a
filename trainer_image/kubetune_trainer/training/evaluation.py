"""Eval loss: the mean token loss over every validation example, exactly, across ranks.

Like the training loss, it is the sum of token losses divided by the number of label tokens,
over the whole validation set (not a mean of per-batch means, which would weigh short batches
as much as long ones).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..data.packing import ModelBatch
from .distributed import all_reduce_max, all_reduce_sum
from .loss import summed_label_loss
from .micro_batch_loss import MicroBatchLoss
from .precision import PrecisionPlan


def evaluate(
    model: nn.Module,
    batches: Sequence[ModelBatch],
    *,
    precision: PrecisionPlan,
    device: torch.device,
    loss: MicroBatchLoss = summed_label_loss,
) -> float:
    """Eval loss of `model` over this rank's `batches` together with every other rank's."""
    # Under FSDP each forward is a collective, so every rank runs as many as the busiest one;
    # the extra passes repeat a batch and count for nothing.
    passes = int(all_reduce_max(torch.tensor([len(batches)], dtype=torch.float64))[0])
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64)  # summed token loss, label tokens
    # Summed on the device and read once: a copy to the host per batch would make the host wait for each.
    summed_on_device = torch.zeros((), dtype=torch.float64, device=device)
    with torch.no_grad():
        for index in range(passes):
            if not batches:
                break
            batch = batches[min(index, len(batches) - 1)].to(device)
            with precision.autocast():
                summed = loss(model, batch)
            if index < len(batches):
                summed_on_device += summed.double()
                totals[1] += batch.label_tokens
    totals[0] = summed_on_device.cpu()
    model.train(was_training)
    all_reduce_sum(totals)
    return float(totals[0] / totals[1]) if totals[1] > 0 else float("nan")
