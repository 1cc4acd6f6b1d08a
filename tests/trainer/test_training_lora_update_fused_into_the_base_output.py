"""LoRA's update added into the base output in place (`training.lora_fused`) trains exactly as peft's forward.

The fused layers must give the same loss and the same adapter gradients as peft's own forward
(fp32, to 1e-5), keep peft's behaviour wherever they step aside (adapter disabled, merged, dropout),
and trace as one graph, as the GPU template compiles them.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from kubetune_trainer.contract import LoraConfig
from kubetune_trainer.training.lora import apply_lora
from kubetune_trainer.training.lora_fused import fuse_lora_updates

from .saved_for_backward import saved_for_backward

SHAPE = LlamaConfig(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=97,
    use_cache=False,
)


def _peft_and_fused(*, dropout: float = 0.0) -> tuple[Any, Any, Any]:
    """One LoRA model twice, peft's forward and the fused one, with B drawn away from its zero start,
    and the base model as it was before LoRA."""
    torch.manual_seed(0)
    base = LlamaForCausalLM(SHAPE)
    untouched_base = copy.deepcopy(base)
    peft_model = apply_lora(
        base,
        LoraConfig(r=8, alpha=16, dropout=dropout, target_modules=["all-linear"], merge=False),
    )
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.05)
    fused_model = copy.deepcopy(peft_model)
    assert fuse_lora_updates(fused_model) == 2 * 7  # q k v o gate up down in each layer
    return peft_model, fused_model, untouched_base


def _loss_and_grads(model: Any, ids: torch.Tensor, *, seed: int = 1) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def _ids() -> torch.Tensor:
    return torch.randint(0, SHAPE.vocab_size, (3, 24), generator=torch.Generator().manual_seed(5))


def _assert_same(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> None:
    assert sorted(actual) == sorted(expected)
    for name, grad in expected.items():
        torch.testing.assert_close(actual[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_the_fused_layers_give_peft_s_loss_and_adapter_gradients() -> None:
    peft_model, fused_model, _ = _peft_and_fused()
    peft_loss, peft_grads = _loss_and_grads(peft_model, _ids())
    fused_loss, fused_grads = _loss_and_grads(fused_model, _ids())
    torch.testing.assert_close(fused_loss, peft_loss, rtol=1e-6, atol=0)
    assert len(peft_grads) == 2 * 7 * 2  # A and B of every adapted layer, nothing of the frozen base
    _assert_same(peft_grads, fused_grads)


def test_dropout_draws_the_same_masks_as_peft_and_keeps_no_dropped_out_copy() -> None:
    peft_model, fused_model, _ = _peft_and_fused(dropout=0.2)
    peft_model.train()
    fused_model.train()
    peft_loss, peft_grads = _loss_and_grads(peft_model, _ids(), seed=7)
    fused_loss, fused_grads = _loss_and_grads(fused_model, _ids(), seed=7)
    torch.testing.assert_close(fused_loss, peft_loss, rtol=1e-6, atol=0)
    _assert_same(peft_grads, fused_grads)
    # What dropout adds to the kept bytes: one bool mask over each adapter's input, and nothing else.
    _, without_dropout, _ = _peft_and_fused()
    without_dropout.train()
    tokens = _ids().numel()
    masks_per_layer = 5 * SHAPE.hidden_size + SHAPE.hidden_size + SHAPE.intermediate_size  # q k v gate up, o, down
    masks = SHAPE.num_hidden_layers * masks_per_layer * tokens
    assert _kept_bytes(fused_model) == _kept_bytes(without_dropout) + masks
    assert _kept_bytes(peft_model) > _kept_bytes(fused_model) + 4 * masks  # peft: an fp32 copy per adapter


def _kept_bytes(model: Any) -> int:
    """Bytes autograd keeps for backward in one forward, distinct storages, weights excluded."""
    with saved_for_backward(model) as kept:
        model(input_ids=_ids(), labels=_ids())
    return sum(kept.values())


def test_a_disabled_adapter_leaves_the_base_model_s_output() -> None:
    _, fused_model, base = _peft_and_fused()
    with torch.no_grad():
        with fused_model.disable_adapter():
            reference_logits = fused_model(input_ids=_ids()).logits
        adapted_logits = fused_model(input_ids=_ids()).logits
        base_logits = base(input_ids=_ids()).logits
    torch.testing.assert_close(reference_logits, base_logits)
    assert not torch.allclose(adapted_logits, base_logits)


def test_the_merged_model_gives_the_fused_model_s_output() -> None:
    _, fused_model, _ = _peft_and_fused()
    with torch.no_grad():
        adapted = fused_model(input_ids=_ids()).logits
        merged = fused_model.merge_and_unload()
        torch.testing.assert_close(merged(input_ids=_ids()).logits, adapted, rtol=1e-5, atol=1e-5)


def test_under_bf16_autocast_the_update_computes_in_bf16_like_peft_s() -> None:
    peft_model, fused_model, _ = _peft_and_fused()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        peft_loss, _ = _loss_and_grads(peft_model, _ids())
        fused_loss, fused_grads = _loss_and_grads(fused_model, _ids())
    # One rounding to bf16 where peft's sum rounds three times: close, not equal.
    torch.testing.assert_close(fused_loss, peft_loss, rtol=2e-2, atol=0)
    assert all(grad.dtype is torch.float32 for grad in fused_grads.values())  # the fp32 adapters' gradients


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_a_fused_decoder_layer_compiles_as_one_graph(dropout: float) -> None:
    _, fused_model, _ = _peft_and_fused(dropout=dropout)
    layer = fused_model.get_base_model().model.layers[0]
    hidden = torch.randn(2, 24, SHAPE.hidden_size)
    position_embeddings = fused_model.get_base_model().model.rotary_emb(
        hidden, torch.arange(24).unsqueeze(0).expand(2, -1)
    )
    torch.manual_seed(3)
    eager = layer(hidden, position_embeddings=position_embeddings)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    torch.manual_seed(3)
    out = compiled(hidden, position_embeddings=position_embeddings)
    eager_out = eager[0] if isinstance(eager, tuple) else eager
    out = out[0] if isinstance(out, tuple) else out
    torch.testing.assert_close(out, eager_out, rtol=1e-5, atol=1e-6)
    out.sum().backward()
    adapter_grads = [p.grad for n, p in layer.named_parameters() if "lora_" in n]
    assert adapter_grads
    assert all(g is not None and torch.isfinite(g).all() for g in adapter_grads)
