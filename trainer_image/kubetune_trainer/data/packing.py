"""Tokenized examples to model inputs: packed into one row without attention across examples, or padded.

Packed (`packing: true`): the examples of a micro-batch are concatenated into one row of shape
`[1, total_tokens]` with `position_ids` restarting at 0 for each example and no attention mask. The
transformers 5 masking code reads the restarts as sequence boundaries and builds a block-diagonal
causal mask, so no token attends to another example, in the eager and the sdpa attention alike
(flash-attention does the same with varlen kernels on GPU). It does so ONLY when the model runs
without a KV cache: set `model.config.use_cache = False` (or pass `use_cache=False`) in training and
evaluation, or examples silently attend across boundaries (docs/data.md). The first label of every
example is -100, so no example's first token is predicted from the previous example.

Padded (`packing: false`): one row per example, right-padded to the longest in the micro-batch, with
an attention mask and labels -100 on padding.

Loss normalisation, for exact gradient accumulation: sum the token losses of every micro-batch of
an optimizer step (`summed_token_loss`) and divide by the label tokens of the whole step
(`OptimizerStep.label_tokens`), not by each micro-batch's own count. DistributedDataParallel averages
gradients over ranks, so each rank multiplies its share by the world size:
`loss = summed_token_loss(logits, labels) * world_size / step.label_tokens(examples)`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import torch
from torch.nn import functional

from .tokenization import IGNORE_INDEX, TokenizedExample


@dataclass(frozen=True)
class ModelBatch:
    """Tensors for one forward pass, and what they hold."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor | None
    attention_mask: torch.Tensor | None
    examples: int
    tokens: int
    """Real (non-pad) tokens, the figure tokens/s counts."""
    label_tokens: int
    """Tokens that count in the loss."""
    cu_seq_lens: torch.Tensor | None = None
    """Packed: where each example starts and the row ends ([0, l0, l0 + l1, ...], int32)."""
    max_length: int = 0
    """Packed: the longest example's tokens."""
    before_labels: torch.Tensor | None = None
    """The positions followed by a label in some row (`label_positions`), found on the host when the batch
    moved to its device (`to`): the loss then selects them without waiting for the device (a `nonzero` there
    copies its count back, a sync in every micro-batch's forward)."""

    def model_inputs(self) -> dict[str, Any]:
        """Keyword arguments for `model(**inputs)`, labels left out: compute the loss with `summed_token_loss`.

        A packed row also carries its examples' boundaries, under the names transformers hands to
        every attention layer; the document-masked kernels (`training.attention`) read them, and
        transformers' own attention implementations ignore them.
        """
        inputs: dict[str, Any] = {"input_ids": self.input_ids}
        if self.position_ids is not None:
            inputs["position_ids"] = self.position_ids
        if self.attention_mask is not None:
            inputs["attention_mask"] = self.attention_mask
        if self.cu_seq_lens is not None:
            inputs.update(
                cu_seq_lens_q=self.cu_seq_lens,
                cu_seq_lens_k=self.cu_seq_lens,
                max_length_q=self.max_length,
                max_length_k=self.max_length,
            )
        return inputs

    def positions_before_labels(self) -> torch.Tensor:
        """The positions whose next token is a label in some row, on the batch's device."""
        return self.before_labels if self.before_labels is not None else label_positions(self.labels)

    def to(self, device: torch.device | str) -> Self:
        """The batch (of this class, its other fields kept) with its tensors on `device` (`to_device`)."""

        def move(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else to_device(tensor, device)

        return dataclasses.replace(
            self,
            input_ids=to_device(self.input_ids, device),
            labels=to_device(self.labels, device),
            position_ids=move(self.position_ids),
            attention_mask=move(self.attention_mask),
            cu_seq_lens=move(self.cu_seq_lens),
            before_labels=to_device(self.positions_before_labels(), device),
        )


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """`tensor` on `device`. A host tensor goes to a GPU through pinned memory without blocking: torch follows a
    blocking copy from pageable memory with a stream synchronize, so each micro-batch would wait for the last
    one's backward."""
    if tensor.device.type == "cpu" and torch.device(device).type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def label_positions(labels: torch.Tensor) -> torch.Tensor:
    """Positions whose next token is a label in any row (rows share the sequence axis)."""
    return (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)


def collate_packed(examples: Sequence[TokenizedExample]) -> ModelBatch:
    """One row holding every example, positions restarting at 0 for each: needs `use_cache=False`."""
    if not examples:
        raise ValueError("a micro-batch needs at least one example")
    input_ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for example in examples:
        input_ids.extend(example.input_ids)
        # Never predict an example's first token from the end of the one before it.
        labels.extend([IGNORE_INDEX, *example.labels[1:]])
        positions.extend(range(len(example)))
    label_tensor = torch.tensor([labels], dtype=torch.long)
    lengths = [len(example) for example in examples]
    return ModelBatch(
        input_ids=torch.tensor([input_ids], dtype=torch.long),
        labels=label_tensor,
        position_ids=torch.tensor([positions], dtype=torch.long),
        attention_mask=None,
        examples=len(examples),
        tokens=len(input_ids),
        label_tokens=int((label_tensor != IGNORE_INDEX).sum()),
        cu_seq_lens=torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32),
        max_length=max(lengths),
    )


def collate_padded(examples: Sequence[TokenizedExample], *, pad_token_id: int) -> ModelBatch:
    """One right-padded row per example, padded to the longest of this micro-batch only."""
    if not examples:
        raise ValueError("a micro-batch needs at least one example")
    width = max(len(example) for example in examples)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        size = len(example)
        input_ids[row, :size] = torch.tensor(example.input_ids, dtype=torch.long)
        labels[row, :size] = torch.tensor(example.labels, dtype=torch.long)
        attention_mask[row, :size] = 1
    labels[:, 0] = IGNORE_INDEX
    return ModelBatch(
        input_ids=input_ids,
        labels=labels,
        position_ids=None,
        attention_mask=attention_mask,
        examples=len(examples),
        tokens=int(attention_mask.sum()),
        label_tokens=int((labels != IGNORE_INDEX).sum()),
    )


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every label position, in fp32, shape `labels.shape`; 0 where the label is -100.

    Position t is predicted by the logits at t-1, so position 0 of each row has no loss.
    """
    predicted = logits[:, :-1, :].float()
    targets = labels[:, 1:]
    losses = functional.cross_entropy(
        predicted.reshape(-1, predicted.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
    ).view(targets.shape)
    return functional.pad(losses, (1, 0))


def summed_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of the token losses of a micro-batch: divide by the step's label tokens for the mean."""
    return token_losses(logits, labels).sum()
