"""The memory model: no torch, activations as autograd really keeps them, and a budget that follows the free memory."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from kubetune_trainer.contract import LoraConfig
from kubetune_trainer.memory_model import (
    BUDGET_CEILING_TOKENS,
    GIB,
    ModelShape,
    TrainingSetup,
    activation_bytes_per_token,
    estimate,
    plan_token_budget,
)
from kubetune_trainer.training.lora import apply_lora
from kubetune_trainer.training.lora_fused import fuse_lora_updates

from .saved_for_backward import saved_for_backward

LLAMA_1B = {
    "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256, "tie_word_embeddings": True,
}  # fmt: skip


def test_the_module_imports_no_torch() -> None:
    code = "import sys, kubetune_trainer.memory_model; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_parameters_estimated_from_config_match_the_real_count() -> None:
    assert ModelShape.from_config(LLAMA_1B).parameters == 1_235_814_400  # Llama-3.2-1B


@pytest.mark.parametrize(
    ("lora_rank", "lora_dropout"), [(None, 0.0), (16, 0.0), (16, 0.1)], ids=["full", "lora", "lora-dropout"]
)
@pytest.mark.parametrize(("hidden", "intermediate", "kv_heads"), [(64, 176, 2), (128, 256, 8), (96, 320, 4)])
def test_activation_bytes_match_what_autograd_keeps(
    hidden: int, intermediate: int, kv_heads: int, lora_rank: int | None, lora_dropout: float
) -> None:
    config = LlamaConfig(
        hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=3, num_attention_heads=8,
        num_key_value_heads=kv_heads, vocab_size=300, use_cache=False,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    if lora_rank is not None:
        # As Initialization adds it: peft on all-linear, the update fused into the base output.
        adapters = LoraConfig(
            r=lora_rank, alpha=2 * lora_rank, dropout=lora_dropout, target_modules=["all-linear"], merge=False
        )
        model = apply_lora(model, adapters)
        fuse_lora_updates(model)
    tokens = 256
    with saved_for_backward(model) as kept:
        model(input_ids=torch.randint(0, 300, (1, tokens)), logits_to_keep=torch.zeros(0, dtype=torch.long))
    shape = ModelShape.from_config(config.to_dict())
    setup = TrainingSetup.for_run(shape, device="cpu", lora_rank=lora_rank, lora_dropout=lora_dropout > 0)
    predicted = activation_bytes_per_token(shape, setup)
    assert sum(kept.values()) / tokens == pytest.approx(predicted, rel=0.05)


def test_budget_follows_free_memory_between_one_sequence_and_the_ceiling() -> None:
    shape = ModelShape.from_config(LLAMA_1B)
    setup = TrainingSetup.for_run(shape)
    budgets = [plan_token_budget(shape, setup, free_bytes=g * GIB, max_seq_length=2048) for g in (20, 60, 130, 2000)]
    assert [b.limited_by for b in budgets] == ["sequence", "memory", "memory", "ceiling"]
    assert budgets[1].token_budget < budgets[2].token_budget < budgets[3].token_budget == BUDGET_CEILING_TOKENS
    # What the plan chose fits: the estimate at that budget is within the free memory.
    chosen = budgets[1]
    needed = estimate(shape, setup, micro_batch_tokens=chosen.token_budget)
    assert needed.total - needed.weights < 60 * GIB


def test_lora_and_checkpointing_leave_room_for_larger_micro_batches() -> None:
    shape = ModelShape.from_config(LLAMA_1B)
    full = TrainingSetup.for_run(shape)
    lora = TrainingSetup.for_run(shape, lora_rank=64)
    checkpointed = TrainingSetup.for_run(shape, gradient_checkpointing=True)
    assert estimate(shape, lora, micro_batch_tokens=1).static < 0.3 * estimate(shape, full, micro_batch_tokens=1).static
    assert activation_bytes_per_token(shape, checkpointed) < 0.2 * activation_bytes_per_token(shape, full)
    plans = [plan_token_budget(shape, s, free_bytes=60 * GIB, max_seq_length=2048) for s in (full, lora)]
    assert plans[0].token_budget < plans[1].token_budget


def test_master_weights_policy_sets_the_optimizer_bytes() -> None:
    shape = ModelShape.from_config(LLAMA_1B)
    per_param = {
        policy: TrainingSetup.for_run(shape, master_weights=policy).optimizer_bytes
        for policy in ("fp32", "bf16-compensated", "bf16")
    }
    assert per_param == {"fp32": 12, "bf16-compensated": 10, "bf16": 4}
