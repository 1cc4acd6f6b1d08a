"""LoRA's all-linear should adapt every linear layer of the language model. peft 0.21 leaves some frozen on a
mixture of experts whose stacked experts it adapts under their transformers 4 names (gate_proj, up_proj,
down_proj): the dense MLPs and shared experts of those names. The trainer finds them, to say so."""

from __future__ import annotations

from typing import Any

import pytest
from transformers import AutoConfig, AutoModelForCausalLM

from kubetune_trainer.contract import LoraConfig
from kubetune_trainer.training.lora import apply_lora, unadapted_linears

SMALL = {
    "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
    "vocab_size": 64, "num_hidden_layers": 3,
}  # fmt: skip
MOE = {"moe_intermediate_size": 16, "num_experts": 4, "num_experts_per_tok": 2}


def _adapted(model_type: str, **extra: Any) -> Any:
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **SMALL, **extra))  # type: ignore[no-untyped-call]
    return apply_lora(model, LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=["all-linear"], merge=False))


def test_a_qwen3_moe_s_dense_layer_is_left_out_and_named() -> None:
    left_out = unadapted_linears(_adapted("qwen3_moe", **MOE, mlp_only_layers=[0]))
    assert left_out == ["model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj", "model.layers.0.mlp.down_proj"]


@pytest.mark.parametrize(
    ("model_type", "extra"),
    [("llama", {}), ("qwen3_moe", MOE), ("qwen2_moe", {**MOE, "decoder_sparse_step": 2})],
    ids=["llama", "qwen3_moe-all-sparse", "qwen2_moe-every-second"],
)
def test_where_all_linear_adapts_every_linear_none_is_named(model_type: str, extra: dict[str, Any]) -> None:
    """The head is left out on purpose and is never named; Qwen2-MoE's dense MLPs are adapted."""
    assert unadapted_linears(_adapted(model_type, **extra)) == []
