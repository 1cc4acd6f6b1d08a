"""The summed token loss of a micro-batch, without ever holding the whole micro-batch's logits.

Two savings, both exact:

- **Only where a label is due.** Masked prompt tokens, padding and each example's first token
  carry no label, yet a plain forward computes vocabulary-wide logits for them too: on chat data
  a third of the output head's work. Only the positions that precede a label are scored, each
  against the label at t + 1, as the shifted loss does.
- **In chunks.** The model runs with its output head applied to no position
  (`logits_to_keep` empty); the decoder's last hidden states are taken by a forward hook, and
  the head, the fp32 upcast and the cross-entropy run over chunks of `loss_chunk_tokens`
  positions, so the peak is one chunk's logits instead of `[tokens, vocab]` in fp32 (31.9 GiB
  at 16k tokens x 128k vocab). A plain linear head (no bias, no soft-capping: Llama, Qwen,
  Mistral) goes through `training.linear_cross_entropy`: each chunk's gradients are taken in
  the forward pass while its logits exist, so nothing is recomputed. Any other head (Gemma's
  final soft-capping, a LoRA-adapted head) is called as a module per chunk, each chunk
  checkpointed: its logits are freed as soon as its loss is summed and recomputed, one chunk at
  a time, in the backward pass. Tied embeddings, DDP's and FSDP's hooks see the head's weight
  as they do in an ordinary call (it is the root's, unsharded after the forward).

The result is the same sum as `data.packing.summed_token_loss` over full logits, forward and
gradients (tests: `test_training_chunked_loss_is_exact.py`); the loop divides it by the step's
label tokens for exact gradient accumulation (`training.accumulate`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional
from torch.utils.checkpoint import checkpoint

from ..data.packing import ModelBatch
from ..data.tokenization import IGNORE_INDEX
from ..memory_model import loss_chunk_tokens
from .linear_cross_entropy import linear_cross_entropy

LOSS_PATH = (
    "label positions only; head and fp32 cross-entropy in chunks (memory_model.loss_chunk_tokens), "
    "their gradients taken in the forward pass"
)
"""What benchmarks print as the loss path."""
_SCALED_LOGITS = ("logit_scale", "logits_scaling", "output_multiplier_scale")
"""config.json fields of models that rescale logits after the head: these keep the plain path."""


def summed_label_loss(model: nn.Module, batch: ModelBatch, *, chunk_tokens: int | None = None) -> torch.Tensor:
    """Sum of the token losses of `batch` (divide by the step's label tokens for the mean).

    `chunk_tokens` overrides the chunk size (default: `memory_model.loss_chunk_tokens` of the vocabulary).
    """
    keep = batch.positions_before_labels()
    targets = batch.labels[:, keep + 1].flatten()
    causal_lm = causal_lm_of(model)
    if causal_lm is None:
        logits = model(**batch.model_inputs(), logits_to_keep=keep).logits
        return _cross_entropy(logits.flatten(0, 1), targets)
    hidden = last_hidden_states(model, causal_lm, batch)[:, keep].flatten(0, 1)
    head = OutputHead.of(causal_lm)
    size = chunk_tokens or loss_chunk_tokens(head.vocab)
    weight = head.linear_weight
    if weight is not None:
        return linear_cross_entropy(hidden, weight, targets, chunk_tokens=size)
    return checkpointed_chunks_loss(head, hidden, targets, chunk_tokens=size)


def checkpointed_chunks_loss(
    head: OutputHead, hidden: torch.Tensor, targets: torch.Tensor, *, chunk_tokens: int
) -> torch.Tensor:
    """The summed cross-entropy of `head`'s logits by chunks of positions (any head; a plain linear
    one has `linear_cross_entropy`)."""
    return sum_over_chunks(_head_loss, head, hidden, targets, size=chunk_tokens, dim=0)


def sum_over_chunks(
    score: Callable[[OutputHead, torch.Tensor, torch.Tensor], torch.Tensor],
    head: OutputHead,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    *,
    size: int,
    dim: int,
) -> torch.Tensor:
    """The sum of `score(head, hidden chunk, targets chunk)` over chunks of `size` along `dim`, in fp32.

    When autograd records and there is more than one chunk, each is checkpointed: its logits are
    freed once scored and recomputed in backward, so only one chunk's logits ever exist at once.
    """
    length = hidden.shape[dim]
    recompute = torch.is_grad_enabled() and length > size
    total = hidden.new_zeros(hidden.shape[:dim], dtype=torch.float32)
    for start in range(0, length, size):
        width = min(size, length - start)
        piece, wanted = hidden.narrow(dim, start, width), targets.narrow(dim, start, width)
        if recompute:
            total = total + checkpoint(score, head, piece, wanted, use_reentrant=False)
        else:
            total = total + score(head, piece, wanted)
    return total


@dataclass(frozen=True)
class OutputHead:
    """A causal LM's output head as the chunked losses call it."""

    module: nn.Module
    vocab: int
    softcap: float | None
    """Gemma's `final_logit_softcapping`: logits become tanh(logits / cap) * cap."""

    @classmethod
    def of(cls, causal_lm: Any) -> OutputHead:
        module = causal_lm.get_output_embeddings()
        vocab = int(getattr(module, "out_features", 0) or causal_lm.config.vocab_size)
        return cls(module, vocab, getattr(causal_lm.config, "final_logit_softcapping", None))

    @property
    def linear_weight(self) -> torch.Tensor | None:
        """The weight when logits = hidden @ weight.T and nothing more (no bias, no cap, no adapter on
        the head); else None."""
        module = self.module
        if type(module) is nn.Linear and module.bias is None and not self.softcap:
            return module.weight
        return None

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """fp32 logits of `hidden`, the head called as a module (tied weights, adapters, FSDP's hooks)."""
        logits: torch.Tensor = self.module(hidden).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


def _head_loss(head: OutputHead, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return _cross_entropy(head.logits(hidden), targets)


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return functional.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="sum")


def transformers_model_of(model: nn.Module) -> Any:
    """The transformers model inside DDP, peft and torch.compile wrappers (whatever its head does)."""
    inner: Any = model
    for _ in range(4):
        if isinstance(inner, nn.parallel.DistributedDataParallel):
            inner = inner.module
        elif hasattr(inner, "_orig_mod"):  # torch.compile's OptimizedModule
            inner = inner._orig_mod
        elif hasattr(inner, "get_base_model") and callable(inner.get_base_model):  # peft
            inner = inner.get_base_model()
        else:
            break
    return inner


def causal_lm_of(model: nn.Module) -> Any | None:
    """The transformers causal LM inside DDP, peft and torch.compile wrappers; None when the head cannot be split off.

    The chunked path needs `get_output_embeddings()` (the head) and `get_decoder()` (whose
    output the head reads). Models that rescale their logits after the head keep the plain path.
    """
    inner = transformers_model_of(model)
    if not (hasattr(inner, "get_output_embeddings") and hasattr(inner, "get_decoder")):
        return None
    config = getattr(inner, "config", None)
    if config is None or any(getattr(config, name, None) not in (None, 1, 1.0) for name in _SCALED_LOGITS):
        return None
    head = inner.get_output_embeddings()
    decoder = inner.get_decoder()
    if not isinstance(head, nn.Module) or not isinstance(decoder, nn.Module) or decoder is inner:
        return None
    return inner


def last_hidden_states(model: nn.Module, causal_lm: Any, batch: ModelBatch) -> torch.Tensor:
    """The decoder's output for `batch`, from a forward of the whole (wrapped) model that applies the head nowhere."""
    captured: list[torch.Tensor] = []

    def grab(module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            captured.append(output)
        else:
            captured.append(output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0])

    # The whole model's forward (not the decoder's alone): DDP's and FSDP's hooks run as usual.
    handle = causal_lm.get_decoder().register_forward_hook(grab)
    try:
        empty = torch.zeros(0, dtype=torch.long, device=batch.input_ids.device)
        model(**batch.model_inputs(), logits_to_keep=empty)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise RuntimeError(f"the decoder ran {len(captured)} times in one forward pass; expected once")
    return captured[0]
