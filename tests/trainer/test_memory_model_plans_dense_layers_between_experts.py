"""A mixture of experts whose layers are not all sparse: DeepSeek's first `first_k_dense_replace` layers and the Qwen
MoEs' `mlp_only_layers` and `decoder_sparse_step` have dense MLPs. The plan counts each kind of layer as transformers
builds it: parameters, LoRA's adapters, the bytes a forward keeps, and MFU's active parameters."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, DeepseekV3Config, PretrainedConfig

from kubetune_trainer.contract import LoraConfig
from kubetune_trainer.memory_model import (
    ModelShape,
    TrainingSetup,
    activation_bytes_per_token,
    merged_expert_bytes,
)
from kubetune_trainer.training.gpu_stats import GpuStats
from kubetune_trainer.training.lean_layers import lean_in, make_layers_lean
from kubetune_trainer.training.lora import apply_lora

from .held_after_forward import as_initialization_makes_it, held_per_token, in_a_fresh_process

pytestmark = pytest.mark.integration  # the bytes kept are measured in a process of their own

DIMS = {
    "hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 24,
    "vocab_size": 300, "use_cache": False, "moe_intermediate_size": 64, "num_experts": 8, "num_experts_per_tok": 2,
    "num_hidden_layers": 4,
}  # fmt: skip
CASES: dict[str, tuple[str, dict[str, Any], int]] = {
    "qwen2_moe-every-second": ("qwen2_moe", {"decoder_sparse_step": 2, "shared_expert_intermediate_size": 128}, 2),
    "qwen3_moe-first-dense": ("qwen3_moe", {"mlp_only_layers": [0]}, 1),
    "qwen3_moe-one-sparse": ("qwen3_moe", {"decoder_sparse_step": 2, "mlp_only_layers": [1]}, 3),
}
"""id: (model_type, what it adds to DIMS, how many of the 4 layers are dense)."""
TOKENS = 1024


def _config(case: str) -> PretrainedConfig:
    model_type, extra, _ = CASES[case]
    return AutoConfig.for_model(model_type, **DIMS, **extra)


def _dense_mlps(model: torch.nn.Module) -> int:
    layers = model.model.layers  # type: ignore[union-attr]
    return sum(1 for layer in layers if not hasattr(layer.mlp, "experts"))


@pytest.mark.parametrize("case", list(CASES))
def test_dense_layers_are_counted_as_transformers_builds_them(case: str) -> None:
    config = _config(case)
    shape = ModelShape.from_config(config.to_dict())
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    assert shape.dense_layers == _dense_mlps(model) == CASES[case][2]
    assert (shape.dense_intermediate_size, shape.intermediate_size) == (256, 64)
    biases = sum(p.numel() for name, p in model.named_parameters() if name.endswith(".bias"))  # Qwen2's q, k, v
    assert shape.estimated_parameters() == sum(p.numel() for p in model.parameters()) - biases
    adapted = apply_lora(model, LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=["all-linear"], merge=False))
    assert shape.lora_parameters(4) == sum(p.numel() for p in adapted.parameters() if p.requires_grad)


@functools.cache
def _held() -> dict[str, float]:
    cases = {f"{case}/{kind}": [case, rank] for case in CASES for kind, rank in (("full", None), ("lora", 16))}
    held: dict[str, float] = in_a_fresh_process(held_per_token_of_cases, cases=cases)
    return held


def held_per_token_of_cases(cases: dict[str, list[Any]]) -> dict[str, float]:
    """Run in the fresh process: the bytes one fp32 forward leaves allocated per token, for each (case, LoRA rank),
    the model made as Initialization makes it."""
    held = {}
    for case_id, (case, rank) in cases.items():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(_config(case))  # type: ignore[no-untyped-call]
        held[case_id] = held_per_token(as_initialization_makes_it(model, rank=rank), tokens=TOKENS)
    return held


@pytest.mark.parametrize(("kind", "rank"), [("full", None), ("lora", 16)])
@pytest.mark.parametrize("case", list(CASES))
def test_each_kind_of_layer_keeps_what_the_plan_counts(case: str, kind: str, rank: int | None) -> None:
    """Within 5% of what the model keeps; planning every layer as sparse (as before) would be off by more."""
    shape = ModelShape.from_config(_config(case).to_dict())
    torch.manual_seed(0)
    probe = AutoModelForCausalLM.from_config(_config(case))  # type: ignore[no-untyped-call]
    make_layers_lean(probe)
    lean_norms, lean_mlp = lean_in(probe)
    setup = TrainingSetup.for_run(shape, device="cpu", lora_rank=rank, lean_norms=lean_norms, lean_mlp=lean_mlp)

    def planned(plan_shape: ModelShape) -> float:
        return activation_bytes_per_token(plan_shape, setup) + merged_expert_bytes(plan_shape, setup) / TOKENS

    measured = _held()[f"{case}/{kind}"]
    assert measured == pytest.approx(planned(shape), rel=0.05)
    all_sparse = ModelShape(**{**vars(shape), "dense_layers": 0, "dense_intermediate_size": 0})
    assert abs(planned(all_sparse) - measured) > 2 * abs(planned(shape) - measured)


def test_deepseek_s_dense_first_layers_and_shared_experts_are_read_and_mfu_counts_the_routed_experts() -> None:
    """DeepSeek V3's config names its experts `n_routed_experts` and `n_shared_experts` (of the routed ones' width)
    and keeps its first `first_k_dense_replace` layers dense; MFU's N is every parameter less the experts a token
    is not routed to in the sparse layers (counting all of them would overstate MFU several times on a real one:
    Moonlight's 16B are 3B a token)."""
    config = DeepseekV3Config(
        vocab_size=300, hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=2,
        first_k_dense_replace=1, q_lora_rank=None, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8,
        v_head_dim=16, n_group=1, topk_group=1, tie_word_embeddings=False,
    )  # fmt: skip
    shape = ModelShape.from_config(config.to_dict())
    assert (shape.num_experts, shape.active_experts, shape.intermediate_size) == (8, 2, 32)
    assert (shape.dense_layers, shape.dense_intermediate_size, shape.shared_expert_intermediate_size) == (1, 128, 64)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    assert _dense_mlps(model) == 1
    experts = sum(p.numel() for name, p in model.named_parameters() if ".mlp.experts." in name)
    idle = experts * (8 - 2) // 8
    stats = GpuStats.for_run(model, device=torch.device("cpu"), world_size=1)
    assert stats.parameters == sum(p.numel() for p in model.parameters()) - idle
    # peft adapts its stacked experts as Qwen3-MoE's (the plan's table says so), and leaves the dense MLP alone.
    adapted = apply_lora(model, LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=["all-linear"], merge=False))
    trainable = [name for name, p in adapted.named_parameters() if p.requires_grad]
    assert shape.lora_adapts_experts
    assert any(".layers.1.mlp.experts." in name for name in trainable)
    assert not any(".layers.0.mlp." in name for name in trainable)


def test_deepseek_s_query_and_key_heads_are_planned_at_their_full_width() -> None:
    """config.json's `head_dim` is DeepSeek's rotary part alone (64 of Moonlight's 192); the plan takes the
    query and key heads whole (and the values, 128, at that width too: more than they are, never less)."""
    config = {
        "model_type": "deepseek_v3", "hidden_size": 2048, "intermediate_size": 11264, "num_hidden_layers": 27,
        "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 64, "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64, "v_head_dim": 128, "vocab_size": 163840,
    }  # fmt: skip
    assert ModelShape.from_config(config).head_dim == 192
