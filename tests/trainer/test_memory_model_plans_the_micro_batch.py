"""The memory model: no torch, activations as autograd really keeps them, and a budget that follows the free memory."""

from __future__ import annotations

import functools
import subprocess
import sys
from typing import Any

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, MixtralConfig, PretrainedConfig

from kubetune_trainer.contract import LoraConfig
from kubetune_trainer.memory_model import (
    BUDGET_CEILING_TOKENS,
    GIB,
    ModelShape,
    TrainingSetup,
    activation_bytes_per_token,
    estimate,
    lean_layers_of,
    merged_expert_bytes,
    plan_token_budget,
)
from kubetune_trainer.training.compile import compile_layers
from kubetune_trainer.training.lean_layers import lean_in, make_layers_lean
from kubetune_trainer.training.lora import apply_lora

from .held_after_forward import as_initialization_makes_it, held_per_token, in_a_fresh_process

Dims = tuple[int, ...]
"""hidden, intermediate, KV heads, head_dim (0: hidden / heads)[, experts, experts per token: a Mixtral]"""
LLAMA_1B = {
    "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256, "tie_word_embeddings": True,
}  # fmt: skip


def test_the_module_imports_no_torch() -> None:
    code = "import sys, kubetune_trainer.memory_model; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_parameters_estimated_from_config_match_the_real_count() -> None:
    assert ModelShape.from_config(LLAMA_1B).parameters == 1_235_814_400  # Llama-3.2-1B


DIMS: dict[str, Dims] = {"64": (64, 176, 2, 0), "128": (128, 256, 8, 0), "96-wide-query": (96, 320, 4, 16)}
MOE_DIMS: dict[str, Dims] = {"moe-8x2": (128, 512, 4, 0, 8, 2), "moe-4x1": (96, 384, 2, 0, 4, 1)}
"""Mixtrals: 8 experts, 2 per token; 4 experts, 1 per token."""
LORA_CASES = {"full": (None, 0.0), "lora": (16, 0.0), "lora-dropout": (16, 0.1)}


@functools.cache
def _held() -> dict[str, float]:
    """Every case's bytes per token, measured once for the module in one fresh process."""
    cases: dict[str, tuple[object, ...]] = {}
    for dims_id, dims in DIMS.items():
        for lora_id, (rank, dropout) in LORA_CASES.items():
            for layers in (2, 4):
                cases[f"{dims_id}/{lora_id}/{layers}/float32"] = (dims, layers, rank, dropout, "float32", True)
        if dims_id != "64":
            cases[f"{dims_id}/full/4/bfloat16"] = (dims, 4, None, 0.0, "bfloat16", True)
            cases[f"{dims_id}/full/4/bfloat16/own"] = (dims, 4, None, 0.0, "bfloat16", False)
            cases[f"{dims_id}/full/4/bfloat16/compiled"] = (dims, 4, None, 0.0, "bfloat16", True, True)
            for lora_id in ("full", "lora"):
                cases[f"{dims_id}/{lora_id}/4/float32/own"] = (dims, 4, LORA_CASES[lora_id][0], 0.0, "float32", False)
                rank = LORA_CASES[lora_id][0]
                cases[f"{dims_id}/{lora_id}/4/float32/compiled"] = (dims, 4, rank, 0.0, "float32", True, True)
    for dims_id, dims in MOE_DIMS.items():
        for layers in (2, 4):
            cases[f"{dims_id}/full/{layers}/float32"] = (dims, layers, None, 0.0, "float32", True)
            cases[f"{dims_id}/lora/{layers}/float32"] = (dims, layers, 16, 0.0, "float32", True)
        cases[f"{dims_id}/full/4/bfloat16"] = (dims, 4, None, 0.0, "bfloat16", True)
    held: dict[str, float] = in_a_fresh_process(held_per_token_of_cases, cases=cases)
    return held


@pytest.mark.parametrize("lora_id", list(LORA_CASES))
@pytest.mark.parametrize("dims_id", list(DIMS))
def test_activation_bytes_match_what_a_forward_leaves_allocated(dims_id: str, lora_id: str) -> None:
    """fp32, as on a CPU; per layer, from two depths, so what the model holds outside the layers cancels."""
    rank, dropout = LORA_CASES[lora_id]
    predicted = {}
    for layers in (2, 4):
        shape = _shape(DIMS[dims_id], layers)
        setup = TrainingSetup.for_run(shape, device="cpu", lora_rank=rank, lora_dropout=dropout > 0)
        predicted[layers] = activation_bytes_per_token(shape, setup)
    measured = {layers: _held()[f"{dims_id}/{lora_id}/{layers}/float32"] for layers in (2, 4)}
    assert (measured[4] - measured[2]) / 2 == pytest.approx((predicted[4] - predicted[2]) / 2, rel=0.04)
    assert measured[4] == pytest.approx(predicted[4], rel=0.05)


@pytest.mark.parametrize("dims_id", ["128", "96-wide-query"])
def test_activation_bytes_in_bf16_match_what_a_forward_leaves_allocated(dims_id: str) -> None:
    """The GPU's compute dtype: bf16 weights and activations, the norms' statistics fp32."""
    shape = _shape(DIMS[dims_id], 4)
    setup = TrainingSetup.for_run(shape, device="cuda", precision="bf16")
    assert setup.compute_bytes == 2
    assert _held()[f"{dims_id}/full/4/bfloat16"] == pytest.approx(activation_bytes_per_token(shape, setup), rel=0.05)


MEASURED_CASES = pytest.mark.parametrize(
    ("case", "lora_rank", "precision"),
    [("full/4/float32", None, "fp32"), ("lora/4/float32", 16, "fp32"), ("full/4/bfloat16", None, "bf16")],
    ids=["full-fp32", "lora-fp32", "full-bf16"],
)
"""The cases `_held` measures besides the lean eager ones (own forwards, compiled layers), at two shapes."""
MEASURED_SHAPES = pytest.mark.parametrize("dims_id", ["128", "96-wide-query"])


@MEASURED_CASES
@MEASURED_SHAPES
def test_a_model_that_keeps_transformers_own_norms_and_mlps_is_counted_as_such(
    dims_id: str, case: str, lora_rank: int | None, precision: str
) -> None:
    """Gemma's norms, GELU MLPs: modules `training.lean_layers` leaves alone keep more, and the plan says so."""
    shape = _shape(DIMS[dims_id], 4)
    device = "cuda" if precision == "bf16" else "cpu"
    own = TrainingSetup.for_run(
        shape, device=device, precision=precision, lora_rank=lora_rank, lean_norms=False, lean_mlp=False
    )
    lean = TrainingSetup.for_run(shape, device=device, precision=precision, lora_rank=lora_rank)
    held = _held()[f"{dims_id}/{case}/own"]
    assert held == pytest.approx(activation_bytes_per_token(shape, own), rel=0.05)
    assert activation_bytes_per_token(shape, own) > 1.2 * activation_bytes_per_token(shape, lean)


@MEASURED_CASES
@MEASURED_SHAPES
def test_compiled_layers_are_counted_as_compiled(
    dims_id: str, case: str, lora_rank: int | None, precision: str
) -> None:
    """Compiled decoder layers (the 1B template's default on GPUs) keep what eager lean ones keep; under
    activation checkpointing the layer being recomputed keeps less (inductor recomputes the norms' outputs
    and the product where the eager hooks step aside for checkpointing's)."""
    shape = _shape(DIMS[dims_id], 4)
    device = "cuda" if precision == "bf16" else "cpu"
    setups = {
        (compiled, checkpointing): TrainingSetup.for_run(
            shape,
            device=device,
            precision=precision,
            lora_rank=lora_rank,
            compiled=compiled,
            gradient_checkpointing=checkpointing,
        )
        for compiled in (False, True)
        for checkpointing in (False, True)
    }
    per_token = {key: activation_bytes_per_token(shape, setup) for key, setup in setups.items()}
    assert _held()[f"{dims_id}/{case}/compiled"] == pytest.approx(per_token[True, False], rel=0.05)
    assert per_token[True, False] == per_token[False, False]
    recomputed = (2 * shape.hidden_size + shape.intermediate_size) * setups[True, True].compute_bytes
    assert per_token[False, True] - per_token[True, True] == recomputed


def _config(dims: Dims, layers: int) -> PretrainedConfig:
    hidden, intermediate, kv_heads, head_dim, *experts = dims
    common: dict[str, Any] = {
        "hidden_size": hidden, "intermediate_size": intermediate, "num_hidden_layers": layers,
        "num_attention_heads": 8, "num_key_value_heads": kv_heads, "head_dim": head_dim or None, "vocab_size": 300,
        "use_cache": False,
    }  # fmt: skip
    if experts:
        return MixtralConfig(**common, num_local_experts=experts[0], num_experts_per_tok=experts[1])
    return LlamaConfig(**common)


def _shape(dims: Dims, layers: int) -> ModelShape:
    return ModelShape.from_config(_config(dims, layers).to_dict())


def held_per_token_of_cases(cases: dict[str, list[Any]]) -> dict[str, float]:
    """Run in the fresh process: for each case (dims, layers, LoRA rank, dropout, dtype, lean[, compiled]), the
    bytes one forward leaves allocated per token, the model made as Initialization makes it (or, lean False,
    with transformers' own norms and MLPs; compiled, its decoder layers compiled as `training.compile` does,
    by inductor's graphs and partitioner with eager kernels)."""
    held = {}
    for case_id, (dims, layers, rank, dropout, dtype, lean, *compiled) in cases.items():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(_config(tuple(dims), layers)).to(getattr(torch, dtype))  # type: ignore[no-untyped-call]
        model = as_initialization_makes_it(model, lean=lean, rank=rank, dropout=dropout)
        if compiled and compiled[0]:
            # A fresh dynamo per model: models of other shapes would fill the compiled code's cache, and past
            # its limit dynamo runs the layers eagerly (one trainer process trains one model).
            torch._dynamo.reset()
            outcome = compile_layers(
                model, requested=True, device=torch.device("cpu"), vocab_size=300, backend="aot_eager_decomp_partition"
            )
            assert outcome.compiled, outcome.reason
        held[case_id] = held_per_token(model, tokens=1024)
    return held


def test_budget_follows_free_memory_between_one_sequence_and_the_ceiling() -> None:
    shape = ModelShape.from_config(LLAMA_1B)
    setup = TrainingSetup.for_run(shape)
    budgets = [plan_token_budget(shape, setup, free_bytes=g * GIB, max_seq_length=2048) for g in (20, 40, 60, 2000)]
    assert [b.limited_by for b in budgets] == ["sequence", "memory", "memory", "ceiling"]
    assert budgets[1].token_budget < budgets[2].token_budget < budgets[3].token_budget == BUDGET_CEILING_TOKENS
    # What the plan chose fits: the estimate at that budget is within the free memory.
    chosen = budgets[1]
    needed = estimate(shape, setup, micro_batch_tokens=chosen.token_budget)
    assert needed.total - needed.weights < 40 * GIB


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


@pytest.mark.parametrize(
    ("model_type", "extra"),
    [
        ("llama", {}),
        ("mistral", {}),
        ("qwen2", {}),
        ("qwen3", {"head_dim": 8}),
        ("mixtral", {"num_local_experts": 4, "num_experts_per_tok": 2}),
        ("phi3", {"pad_token_id": 0}),
        ("gemma2", {"head_dim": 8}),
        ("gemma3_text", {"head_dim": 8}),
        ("qwen2_moe", {"num_experts": 4, "num_experts_per_tok": 2, "shared_expert_intermediate_size": 32}),
        ("qwen3_moe", {"num_experts": 4, "num_experts_per_tok": 2, "mlp_only_layers": [0]}),
        (
            "deepseek_v3",
            {
                "n_routed_experts": 4,
                "num_experts_per_tok": 2,
                "kv_lora_rank": 16,
                "q_lora_rank": None,
                "qk_nope_head_dim": 16,
                "qk_rope_head_dim": 8,
                "v_head_dim": 16,
                "n_group": 1,
                "topk_group": 1,
            },
        ),
        ("starcoder2", {}),
    ],
)
def test_the_planner_s_table_of_lean_layers_is_what_the_trainer_makes_of_each_model_type(
    model_type: str, extra: dict[str, Any]
) -> None:
    """The operator sizes GPUs without a model to probe: its table must say what the probe says (every model type
    the shipped templates name, and one it does not list)."""
    config = AutoConfig.for_model(
        model_type, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=101, **extra,
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    make_layers_lean(model)
    assert lean_in(model) == lean_layers_of([model_type])


MOE_CASES = pytest.mark.parametrize(
    ("case", "lora_rank", "precision"),
    [("full/4/float32", None, "fp32"), ("lora/4/float32", 16, "fp32"), ("full/4/bfloat16", None, "bf16")],
    ids=["full-fp32", "lora-fp32", "full-bf16"],
)


@MOE_CASES
@pytest.mark.parametrize("dims_id", list(MOE_DIMS))
def test_a_mixture_of_experts_is_planned_for_the_experts_each_token_is_routed_to(
    dims_id: str, case: str, lora_rank: int | None, precision: str
) -> None:
    """Mixtral: every routed token keeps an expert's activations, and LoRA (all-linear adapts the stacked experts)
    keeps a merged copy of each layer's expert weights; a dense MLP's plan counts less."""
    shape = _shape(MOE_DIMS[dims_id], 4)
    assert shape.moe
    device = "cuda" if precision == "bf16" else "cpu"
    setup = TrainingSetup.for_run(shape, device=device, precision=precision, lora_rank=lora_rank, lean_mlp=False)
    tokens = 1024
    predicted = activation_bytes_per_token(shape, setup) + merged_expert_bytes(shape, setup) / tokens
    assert _held()[f"{dims_id}/{case}"] == pytest.approx(predicted, rel=0.05)
    if lora_rank is None:
        dense = ModelShape(**{**vars(shape), "num_experts": 0, "active_experts": 0})
        # Two experts a token: a dense plan would count little more than half; one: still less.
        assert activation_bytes_per_token(dense, setup) < (0.6 if shape.active_experts == 2 else 1.0) * predicted
    else:
        assert merged_expert_bytes(shape, setup) == 4 * 4 * shape.num_experts * 3 * shape.hidden_size * (
            shape.intermediate_size
        )
        checkpointed = TrainingSetup.for_run(shape, device=device, lora_rank=lora_rank, gradient_checkpointing=True)
        assert merged_expert_bytes(shape, checkpointed) == merged_expert_bytes(shape, setup) // 4


@pytest.mark.parametrize("dims_id", list(MOE_DIMS))
def test_a_mixture_of_experts_per_layer_bytes_follow_the_layers(dims_id: str) -> None:
    """From two depths, so what the model holds outside the layers cancels."""
    for case, rank in (("full", None), ("lora", 16)):
        per_layer = {}
        for layers in (2, 4):
            shape = _shape(MOE_DIMS[dims_id], layers)
            setup = TrainingSetup.for_run(shape, device="cpu", lora_rank=rank, lean_mlp=False)
            per_layer[layers] = activation_bytes_per_token(shape, setup) + merged_expert_bytes(shape, setup) / 1024
        measured = {layers: _held()[f"{dims_id}/{case}/{layers}/float32"] for layers in (2, 4)}
        assert (measured[4] - measured[2]) / 2 == pytest.approx((per_layer[4] - per_layer[2]) / 2, rel=0.04)


def test_a_mixture_of_experts_counts_its_parameters_and_adapters_as_the_model_and_peft_do() -> None:
    config = _config(MOE_DIMS["moe-8x2"], 2)
    shape = ModelShape.from_config(config.to_dict())
    assert (shape.num_experts, shape.active_experts) == (8, 2)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    assert shape.parameters == sum(p.numel() for p in model.parameters())
    adapted = apply_lora(model, LoraConfig(r=16, alpha=32, dropout=0.0, target_modules=["all-linear"], merge=False))
    assert shape.lora_parameters(16) == sum(p.numel() for p in adapted.parameters() if p.requires_grad)


FAMILY_DIMS = {
    "hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 24,
    "vocab_size": 300, "use_cache": False,
}  # fmt: skip
FAMILIES = ("qwen3", "gemma3_text", "gemma2", "phi3", "qwen2_moe", "qwen3_moe")
"""Qwen3: query and key norms. Gemma 3: those, four norms a layer, fp32 norms. Gemma 2: four fp32 norms a layer
and soft-capped attention, which keeps each example's scores (measured at two lengths). Phi-3: a fused query,
key and value projection (its head width is its hidden size over its heads). Qwen2-MoE: experts and a shared
expert, which LoRA's all-linear adapts instead of the experts; Qwen3-MoE: experts, which it adapts."""
MOE_FAMILY_DIMS = {"moe_intermediate_size": 128, "num_experts": 8, "num_experts_per_tok": 2}


def _family_config(model_type: str, layers: int) -> PretrainedConfig:
    dims = dict(FAMILY_DIMS)
    if model_type == "phi3":
        del dims["head_dim"]
        dims |= {"pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0}
    if model_type.endswith("_moe"):
        dims |= MOE_FAMILY_DIMS | ({"shared_expert_intermediate_size": 256} if model_type == "qwen2_moe" else {})
    return AutoConfig.for_model(model_type, num_hidden_layers=layers, **dims)


@functools.cache
def _held_by_family() -> dict[str, float]:
    cases = {}
    for model_type in FAMILIES:
        for tokens in (512, 1024) if model_type == "gemma2" else (1024,):
            for layers in (2, 4):
                for case, rank, dtype in (
                    ("full", None, "float32"),
                    ("lora", 16, "float32"),
                    ("full", None, "bfloat16"),
                ):
                    cases[f"{model_type}/{case}/{dtype}/{tokens}/{layers}"] = [model_type, layers, rank, dtype, tokens]
    held: dict[str, float] = in_a_fresh_process(held_per_token_of_families, cases=cases)
    return held


def held_per_token_of_families(cases: dict[str, list[Any]]) -> dict[str, float]:
    """Run in the fresh process: each case's (model type, layers, LoRA rank, dtype, tokens) bytes one forward
    leaves allocated per token, the model made lean where the trainer makes it so, its own attention (Gemma 2's
    eager, soft-capped) as transformers picks it."""
    held = {}
    for case_id, (model_type, layers, rank, dtype, tokens) in cases.items():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(_family_config(model_type, layers)).to(getattr(torch, dtype))  # type: ignore[no-untyped-call]
        held[case_id] = held_per_token(as_initialization_makes_it(model, rank=rank), tokens=tokens)
    return held


@pytest.mark.parametrize(
    ("case", "rank", "dtype"),
    [("full", None, "float32"), ("lora", 16, "float32"), ("full", None, "bfloat16")],
    ids=["full-fp32", "lora-fp32", "full-bf16"],
)
@pytest.mark.parametrize("model_type", FAMILIES)
def test_each_architecture_s_own_layers_are_planned_as_they_keep(
    model_type: str, case: str, rank: int | None, dtype: str
) -> None:
    """Counted as the layers keep them: within 4% a layer and 5% in all (planned as a Llama before 2026-12-05,
    these layers kept 1.2-1.25x the plan (Qwen3, Phi-3), up to 1.95x (Gemma 3) and, for Gemma 2, whose attention
    keeps its scores, 8-14x: docs/performance.md)."""
    for tokens in (512, 1024) if model_type == "gemma2" else (1024,):
        predicted = {}
        for layers in (2, 4):
            shape = ModelShape.from_config(_family_config(model_type, layers).to_dict())
            torch.manual_seed(0)
            lean_norms, lean_mlp = lean_in(make_lean_probe(model_type))
            setup = TrainingSetup.for_run(
                shape, device="cpu" if dtype == "float32" else "cuda", lora_rank=rank, lean_norms=lean_norms,
                lean_mlp=lean_mlp, attention_length=tokens,
            )  # fmt: skip
            predicted[layers] = activation_bytes_per_token(shape, setup) + merged_expert_bytes(shape, setup) / tokens
        measured = {layers: _held_by_family()[f"{model_type}/{case}/{dtype}/{tokens}/{layers}"] for layers in (2, 4)}
        assert (measured[4] - measured[2]) / 2 == pytest.approx((predicted[4] - predicted[2]) / 2, rel=0.04)
        assert measured[4] == pytest.approx(predicted[4], rel=0.05)


def make_lean_probe(model_type: str) -> torch.nn.Module:
    """A one-layer model of `model_type` as Initialization makes it: what the lean layers serve there."""
    model: torch.nn.Module = AutoModelForCausalLM.from_config(_family_config(model_type, 1))  # type: ignore[no-untyped-call]
    make_layers_lean(model)
    return model


@pytest.mark.parametrize(
    "model_type", ["llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "qwen2_moe", "gemma2", "gemma3_text", "phi3"]
)
def test_the_norm_tables_say_what_each_model_type_has(model_type: str) -> None:
    """The planner reads query and key norms, sandwich norms and Gemma's norms from config.json's model_type: each
    table entry is checked against the modules transformers builds."""
    config = _family_config(model_type, 1)
    shape = ModelShape.from_config(config.to_dict())
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    names = [name for name, _ in model.named_modules()]
    norms = [module for name, module in model.named_modules() if name.endswith("norm") and ".layers.0." in name]
    assert shape.qk_norm == any(name.endswith("self_attn.q_norm") for name in names)
    assert shape.fused_qkv == any(name.endswith("self_attn.qkv_proj") for name in names)
    assert shape.norms_per_layer == len(norms) - (2 if shape.qk_norm else 0)
    assert shape.gemma_norms == all(type(norm).__name__.startswith("Gemma") for norm in norms)
    biases = sum(p.numel() for name, p in model.named_parameters() if name.endswith(".bias"))  # Qwen2's q, k, v
    assert shape.estimated_parameters() == sum(p.numel() for p in model.parameters()) - biases


@pytest.mark.parametrize("model_type", ["mixtral", "qwen3_moe", "qwen2_moe"])
def test_which_experts_lora_adapts_and_how_many_adapter_parameters_is_what_peft_makes(model_type: str) -> None:
    """peft 0.21's all-linear adapts Mixtral's and Qwen3-MoE's stacked experts and router as parameters, and
    Qwen2-MoE's shared expert and its gate as linears instead of its experts: the plan's table and adapter count
    say the same."""
    config = _family_config(model_type, 1) if model_type != "mixtral" else _config(MOE_DIMS["moe-8x2"], 1)
    shape = ModelShape.from_config(config.to_dict())
    torch.manual_seed(0)
    adapted = apply_lora(
        AutoModelForCausalLM.from_config(config),  # type: ignore[no-untyped-call]
        LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=["all-linear"], merge=False),
    )
    trainable = {name: p.numel() for name, p in adapted.named_parameters() if p.requires_grad}
    assert shape.lora_adapts_experts == any(".mlp.experts." in name for name in trainable)
    assert shape.lora_parameters(4) == sum(trainable.values())
