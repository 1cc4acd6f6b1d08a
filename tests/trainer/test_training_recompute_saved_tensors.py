"""`training.recompute_saved`: a registered tensor is recomputed in backward, once, and only while it lives."""

from __future__ import annotations

import torch
from torch.nn import functional

from kubetune_trainer.training.recompute_saved import recompute_later, recomputing


def _weight(rows: int, columns: int, seed: int) -> torch.Tensor:
    return torch.randn(rows, columns, generator=torch.Generator().manual_seed(seed)).requires_grad_()


def test_a_tensor_saved_three_times_is_recomputed_once_with_the_same_gradients() -> None:
    """As the projections after a norm (q, k and v) save its output: one recomputation serves the three."""
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0)).requires_grad_()
    weights = [_weight(5, 4, seed) for seed in (1, 2, 3)]

    def gradients(recompute: bool) -> tuple[list[torch.Tensor], int]:
        calls = []

        def again() -> torch.Tensor:
            calls.append(1)
            return torch.tanh(x)

        with recomputing():
            shared = torch.tanh(x)
            if recompute:
                assert recompute_later(shared, again)
            total = sum(functional.linear(shared, w).square().sum() for w in weights)
        return list(torch.autograd.grad(total, [x, *weights])), len(calls)

    kept, no_calls = gradients(recompute=False)
    recomputed, calls = gradients(recompute=True)
    assert (no_calls, calls) == (0, 1)
    assert all(torch.equal(a, b) for a, b in zip(kept, recomputed, strict=True))


def test_a_freed_tensor_is_not_mistaken_for_a_later_one_at_its_address() -> None:
    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    w = _weight(64, 64, 1)
    with recomputing():
        freed = x * 2
        recompute_later(freed, lambda: torch.full_like(x, float("nan")))  # would poison the gradient
        address = freed.untyped_storage().data_ptr()
        del freed
        later = x * 3  # the allocator may hand out the freed address again
        reused = later.untyped_storage().data_ptr() == address
        out = functional.linear(later, w).sum()
    out.backward()
    assert w.grad is not None
    assert torch.isfinite(w.grad).all(), f"address reused: {reused}"


def test_inside_a_block_an_inner_block_shares_its_registry() -> None:
    with recomputing() as outer, recomputing() as inner:
        assert outer is not None
        assert inner is outer


def test_under_another_saved_tensor_hook_nothing_is_recomputed() -> None:
    """Activation checkpointing's hooks (or any other) stay the innermost: ours would shadow them."""
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t), recomputing() as registry:
        assert registry is None
        assert not recompute_later(torch.ones(3), lambda: torch.ones(3))


def test_without_grad_nothing_is_registered() -> None:
    with torch.no_grad(), recomputing() as registry:
        assert registry is None
