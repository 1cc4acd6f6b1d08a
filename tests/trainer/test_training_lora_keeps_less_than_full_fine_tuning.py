"""LoRA's memory on the CPU: nothing kept for the frozen base, and no more kept for backward than full fine-tuning.

What a LoRA run holds beyond the model is the adapters' gradients and AdamW state, and what autograd
keeps for the backward pass. The frozen base must add nothing to the first (no gradient buffer, no
optimizer state), and the second must be full fine-tuning's on the same micro-batch plus no more than
the adapters' own (their rank-r products, and with dropout a 1-byte mask per input): on a CPU the
adapters are fp32 like their inputs, so peft casts nothing (docs/performance.md, "LoRA against full
fine-tuning on the CPU", has the figures on a 14.7M-parameter Llama).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn
from torch.optim import Optimizer
from transformers import AutoTokenizer

from kubetune_trainer.contract import LoraConfig
from kubetune_trainer.data.packing import collate_packed
from kubetune_trainer.stages import initialize
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.loss import summed_label_loss
from kubetune_trainer.training.optim import build_optimizer

from .saved_for_backward import saved_for_backward
from .training_jobs import chat_lines, tokenized, trainer_config, training_context, write_jsonl

LORA = LoraConfig(r=8, alpha=16, dropout=0.0, target_modules=["all-linear"], merge=False)


def _one_step(
    tiny_llama: TinyModel, tmp_path: Path, *, lora: LoraConfig | None
) -> tuple[nn.Module, int, int, Optimizer]:
    """Initialization as a job runs it, then one packed micro-batch forward, backward and AdamW step.

    Returns the model, the bytes autograd kept for backward (distinct storages, weights excluded),
    the micro-batch's tokens and the optimizer.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama.snapshot_path))
    lines = chat_lines(8, seed=11)
    config = trainer_config(
        tiny_llama, work_dir=tmp_path, training_file=write_jsonl(tmp_path / "t.jsonl", lines), lora=lora, n_evals=0
    )
    examples = tokenized(tokenizer, lines)
    ctx, _, downloaded = training_context(config, model=tiny_llama, tokenizer=tokenizer, train=examples)
    model = initialize.run(ctx, downloaded).model
    model.train()  # as the training loop sets it: dropout drops
    batch = collate_packed(examples)
    with saved_for_backward(model) as kept:
        loss = summed_label_loss(model, batch)
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer = build_optimizer(model, learning_rate=1e-3, weight_decay=0.01)
    optimizer.step()
    return model, sum(kept.values()), batch.input_ids.numel(), optimizer


def test_the_frozen_base_gets_no_gradient_and_no_optimizer_state(tiny_llama: TinyModel, tmp_path: Path) -> None:
    model, _, _, optimizer = _one_step(tiny_llama, tmp_path, lora=LORA)
    frozen = [(name, p) for name, p in model.named_parameters() if not p.requires_grad]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert frozen
    assert trainable
    assert [name for name, p in frozen if p.grad is not None] == []
    assert all(p.grad is not None for p in trainable)
    state = optimizer.state
    assert {id(p) for p in state} == {id(p) for p in trainable}
    # AdamW's two moments of the adapters, nothing more.
    moments = sum(t.numel() for s in state.values() for key, t in s.items() if key != "step")
    assert moments == 2 * sum(p.numel() for p in trainable)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_lora_keeps_for_backward_no_more_than_full_fine_tuning_and_its_adapters_own(
    tiny_llama: TinyModel, tmp_path: Path, dropout: float
) -> None:
    """Per token, each adapter adds its rank-r product and, with dropout, a 1-byte mask of its input (not
    a dropped-out copy); the frozen base adds nothing: no more is kept than full fine-tuning's."""
    full_model, full_bytes, full_tokens, _ = _one_step(tiny_llama, tmp_path / "full", lora=None)
    lora = LORA.model_copy(update={"dropout": dropout})
    _, lora_bytes, lora_tokens, _ = _one_step(tiny_llama, tmp_path / "lora", lora=lora)
    assert full_tokens == lora_tokens
    config = full_model.config
    hidden, intermediate, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    query = config.num_attention_heads * getattr(config, "head_dim", hidden // config.num_attention_heads)
    products = 7 * LORA.r * 4  # q, k, v, o, gate, up, down: fp32 on the CPU
    masks = 5 * hidden + query + intermediate if dropout else 0
    adapters_own = layers * (products + masks)
    assert lora_bytes / lora_tokens <= full_bytes / full_tokens + adapters_own, (lora_bytes, full_bytes)
