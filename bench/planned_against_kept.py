"""What each architecture's layers keep for backward, against the memory plan, with and without its own features.

    .venv/bin/python bench/planned_against_kept.py [--tokens 1024] [--dtypes float32,bfloat16]

The memory plan (`kubetune_trainer.memory_model`) sizes the trainer's micro-batch and the operator's GPUs
from config.json numbers. Besides widths and depth, some architectures keep more: Qwen3's and Gemma 3's query
and key norms, Gemma 2's and 3's four fp32 norms a layer, Gemma 2's soft-capped attention (its scores over
each example), Mixtral's and the Qwen MoEs' two experts a token (and Qwen2-MoE's shared expert), Phi-3's
fused query-key-value projection. For a small random
model of each (hidden 128, 8 heads of 24 or 16, 4 and 2 layers), this prints the bytes one forward leaves
allocated per token and layer (glibc's count, `tests/trainer/held_after_forward.py`: the 4-layer figure less
the 2-layer one, halved, so what sits outside the layers cancels; no logits), each model in a process of its
own, against:

  plan      the memory plan as the trainer and the operator now make it
  as-llama  the plan without the architecture's own features (what it planned before 2026-12-05: query and
            key norms, sandwich and Gemma norms, soft-capped attention, experts, fused projections all off)

Full fine-tuning; the models made as Initialization makes them (lean norms and MLPs where they serve).
"""

# ruff: noqa: PLC0415 - each variant's process imports the ML stack; the parent does not.

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from variant_process import add_variant_options, spawn_variant

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "trainer_image"))
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # the `tests` package: held_after_forward

COMMON = {"hidden_size": 128, "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 300, "use_cache": False}
MODELS: dict[str, dict[str, Any]] = {
    "llama": {"intermediate_size": 256, "head_dim": 24},
    "qwen3": {"intermediate_size": 256, "head_dim": 24},
    "gemma3_text": {"intermediate_size": 256, "head_dim": 24},
    "gemma2": {"intermediate_size": 256, "head_dim": 24},
    "mixtral": {"intermediate_size": 512, "num_local_experts": 8, "num_experts_per_tok": 2},
    "phi3": {"intermediate_size": 256, "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0},
    "qwen2_moe": {
        "intermediate_size": 256, "moe_intermediate_size": 128, "shared_expert_intermediate_size": 256,
        "num_experts": 8, "num_experts_per_tok": 2, "head_dim": 24,
    },
    "qwen3_moe": {
        "intermediate_size": 256, "moe_intermediate_size": 128, "num_experts": 8, "num_experts_per_tok": 2,
        "head_dim": 24,
    },
}  # fmt: skip
"""config.json model types and what each adds to COMMON."""


def _config(model_type: str, layers: int) -> Any:
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type, num_hidden_layers=layers, **COMMON, **MODELS[model_type])


def held_per_token(*, model_type: str, dtype: str, tokens: int) -> dict[str, Any]:
    """Run in the variant's own process: bytes kept per token at 2 and 4 layers, and what the lean layers serve."""
    import torch
    from tests.trainer.held_after_forward import held_after
    from transformers import AutoModelForCausalLM

    from kubetune_trainer.training.lean_layers import lean_in, make_layers_lean

    held = {}
    for layers in (2, 4):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(_config(model_type, layers)).to(getattr(torch, dtype))
        make_layers_lean(model)
        model.train()
        ids = torch.randint(0, COMMON["vocab_size"], (1, tokens), generator=torch.Generator().manual_seed(1))
        model(input_ids=ids, labels=ids).loss.backward()  # what stays allocated for good stays out
        model.zero_grad(set_to_none=True)
        with held_after() as measured:
            output = model(input_ids=ids, logits_to_keep=torch.zeros(0, dtype=torch.long))
        del output
        held[layers] = measured.bytes / tokens
        lean_norms, lean_mlp = lean_in(model)
    return {"per_layer": (held[4] - held[2]) / 2, "lean_norms": lean_norms, "lean_mlp": lean_mlp}


def planned_per_layer(model_type: str, dtype: str, tokens: int, *, lean: tuple[bool, bool], own: bool) -> float:
    """The plan's bytes per token and layer; `own` False: the architecture's own features turned off."""
    from kubetune_trainer.memory_model import ModelShape, TrainingSetup, activation_bytes_per_token

    per_token = {}
    for layers in (2, 4):
        shape = ModelShape.from_config(_config(model_type, layers).to_dict())
        if not own:
            # As the plan read config.json before: no experts (config's `intermediate_size` as one dense MLP's).
            shape = dataclasses.replace(
                shape, num_experts=0, active_experts=0, qk_norm=False, sandwich_norms=False, gemma_norms=False,
                softcapped_attention=False, fused_qkv=False, shared_expert_intermediate_size=0,
                lora_adapts_experts=False, intermediate_size=MODELS[model_type]["intermediate_size"],
            )  # fmt: skip
        bf16 = dtype == "bfloat16"
        setup = TrainingSetup.for_run(
            shape, device="cuda" if bf16 else "cpu", precision="bf16" if bf16 else "fp32", lean_norms=lean[0],
            lean_mlp=lean[1], attention_length=tokens,
        )  # fmt: skip
        per_token[layers] = activation_bytes_per_token(shape, setup)
    return (per_token[4] - per_token[2]) / 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    add_variant_options(parser, variants=list(MODELS))
    args = parser.parse_args()
    if args.run_variant:
        figures = held_per_token(model_type=args.run_variant, dtype=args.dtypes, tokens=args.tokens)
        print("FIGURES " + json.dumps(figures))
        return 0
    print(f"{args.tokens} tokens in one example; bytes kept per token and layer")
    print("| model type | dtype | kept | plan | kept / plan | as-llama plan | kept / as-llama |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as workdir:
        for dtype in args.dtypes.split(","):
            for model_type in MODELS:
                flags = ["--dtypes", dtype, "--tokens", str(args.tokens)]
                figures = spawn_variant(__file__, model_type, workdir=Path(workdir), flags=flags)
                kept, lean = figures["per_layer"], (figures["lean_norms"], figures["lean_mlp"])
                plan = planned_per_layer(model_type, dtype, args.tokens, lean=lean, own=True)
                before = planned_per_layer(model_type, dtype, args.tokens, lean=lean, own=False)
                print(
                    f"| {model_type} | {dtype} | {kept:,.0f} | {plan:,.0f} | {kept / plan:.3f} | {before:,.0f} "
                    f"| {kept / before:.2f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
