"""The output head and cross-entropy by chunks, their gradients computed in the forward pass.

`sum(cross_entropy(hidden @ weight.T, targets))` over chunks of positions. While a chunk's logits
exist (forward), their gradient is known in closed form, `softmax(logits) - onehot(target)`, so
the chunk's gradients for the hidden states and the head's weight are taken right then and the
logits freed: no chunk is recomputed in backward (checkpointed chunks run the head's matmul a
second time: one more pass over vocabulary x hidden per token, about 6% of a 1B Llama's training
FLOPs and more of LoRA's, where the head is frozen). Backward only scales the kept gradients by
the loss's own gradient (the step's 1 / label tokens, a loss scale).

A chunk holds one fp32 buffer: its logits upcast, which give the targets' logits, then become
exp(logits - row max) in place (the row sums give the log-normaliser, so the loss) and, divided by
the sums, the softmax: the gradient. Beside it there is at most one
copy in the compute dtype (the logits while upcasting, the gradient as the matmuls read it): 6 bytes
per logit in bf16, where `cross_entropy` followed by `softmax` held two fp32 tensors at once (8).

What is kept from forward to backward: the hidden states' gradient (as large as the hidden states
a checkpointed chunk keeps) and, when the head trains, its weight's gradient (the size of the
head). The sum equals the plain loss, forward and gradients (`test_training_chunked_loss_is_exact.py`).
"""

from __future__ import annotations

from typing import Any

import torch

from ..data.tokenization import IGNORE_INDEX


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *, chunk_tokens: int
) -> torch.Tensor:
    """Summed cross-entropy of `hidden @ weight.T` against `targets` (IGNORE_INDEX scores nothing), in fp32."""
    if not (torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)):
        return _chunked(hidden, weight, targets, chunk_tokens, wants_hidden=False, wants_weight=False)[0]
    total: torch.Tensor = _LinearCrossEntropy.apply(hidden, weight, targets, chunk_tokens)  # type: ignore[no-untyped-call]
    return total


def _chunked(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_tokens: int, *, wants_hidden: bool,
    wants_weight: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:  # fmt: skip
    """The summed loss, and the gradients asked for (of the sum itself: scaled in backward)."""
    grad_hidden = torch.empty_like(hidden) if wants_hidden else None
    grad_weight = torch.zeros_like(weight) if wants_weight else None
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    for start in range(0, hidden.shape[0], chunk_tokens):
        piece, wanted = hidden[start : start + chunk_tokens], targets[start : start + chunk_tokens]
        logits = piece @ weight.t()  # the compute dtype (autocast's, as the head's own call)
        # One fp32 buffer per chunk, worked on in place (`logsumexp` and `cross_entropy` would each
        # allocate another as large): exp(logits - row max), whose row sums give the log-normaliser
        # and which, divided by them, is the softmax.
        chunk = logits.float()
        del logits
        scored = wanted != IGNORE_INDEX
        target_logits = chunk.gather(1, wanted.clamp(min=0).unsqueeze(1)).squeeze(1)
        maxima = chunk.amax(dim=-1, keepdim=True)
        exps = chunk.sub_(maxima).exp_()
        del chunk
        sums = exps.sum(dim=-1, keepdim=True)
        log_normaliser = (maxima + sums.log()).squeeze(1)
        total += torch.where(scored, log_normaliser - target_logits, 0.0).sum()
        if not (wants_hidden or wants_weight):
            continue
        # d(sum of losses)/d(logits): softmax less the target's one-hot, zero where nothing is scored.
        grad_logits = exps.div_(sums)
        del exps
        grad_logits[scored, wanted[scored]] -= 1.0
        grad_logits[~scored] = 0.0
        grad_logits = grad_logits.to(piece.dtype)
        if grad_hidden is not None:
            grad_hidden[start : start + chunk_tokens] = grad_logits @ weight.to(piece.dtype)
        if grad_weight is not None:
            grad_weight += (grad_logits.t() @ piece).to(grad_weight.dtype)
        del grad_logits  # before the next chunk's logits exist
    return total, grad_hidden, grad_weight


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_tokens: int
    ) -> torch.Tensor:
        total, grad_hidden, grad_weight = _chunked(
            hidden, weight, targets, chunk_tokens, wants_hidden=ctx.needs_input_grad[0],
            wants_weight=ctx.needs_input_grad[1],
        )  # fmt: skip
        ctx.save_for_backward(*(g for g in (grad_hidden, grad_weight) if g is not None))
        ctx.kept = (grad_hidden is not None, grad_weight is not None)
        return total

    @staticmethod
    def backward(ctx: Any, grad_total: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        kept = iter(ctx.saved_tensors)
        has_hidden, has_weight = ctx.kept
        grad_hidden = next(kept) if has_hidden else None
        grad_weight = next(kept) if has_weight else None
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_total.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = grad_weight * grad_total.to(grad_weight.dtype)
        return grad_hidden, grad_weight, None, None
