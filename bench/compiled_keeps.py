"""What a compiled decoder layer keeps for backward, against the eager lean layers and the memory plan.

    .venv/bin/python bench/compiled_keeps.py [--backend inductor] [--tokens 1024] [--dtypes float32,bfloat16]

The memory plan (`kubetune_trainer.memory_model`) counts the bytes per token the trainer's lean
RMSNorms and SwiGLU MLPs keep, eager and compiled. Under torch.compile (the 1B template's default on
GPUs) the layers run transformers' operations and inductor's min-cut partitioner chooses what to
keep, told by checkpoint regions to recompute the norms' outputs and the MLP's product
(docs/training.md, "Lean norms and MLPs"). This prints, for a random Llama whose proportions are
Llama-3.2-1B's (intermediate 4x hidden, 4 query heads per KV head) at 1/8 of its width, the bytes
one forward leaves allocated per token
(glibc's count, `tests/trainer/held_after_forward.py`; no logits, as the plan's per-token figure has
none), each variant in a process of its own:

  own            eager, transformers' forwards
  lean           eager, the lean forwards
  compiled-own   compiled, with transformers' MLP (the norms lean): the product left to the partitioner
  compiled-lean  compiled, as the trainer runs

and the plan's figures, each against the eager lean plan. `--backend aot_eager_decomp_partition`
runs inductor's graphs and partitioner with eager kernels (no C++ compiler needed; what the tests
use).
"""

# ruff: noqa: PLC0415 - each variant's process imports the ML stack; the parent does not.

from __future__ import annotations

import argparse
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

VARIANTS = ("own", "lean", "compiled-own", "compiled-lean")
CONFIG = {
    "hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 8,
    "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 512, "use_cache": False,
}  # fmt: skip


def held_per_token(*, variant: str, dtype: str, backend: str, tokens: int) -> dict[str, Any]:
    """Run in the variant's own process: the bytes one forward of `variant` leaves allocated per token."""
    import torch
    from tests.trainer.held_after_forward import held_after
    from transformers import AutoModelForCausalLM, LlamaConfig

    from kubetune_trainer.training.compile import decoder_layers
    from kubetune_trainer.training.lean_layers import make_layers_lean

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**CONFIG)).to(getattr(torch, dtype))
    if variant != "own":
        make_layers_lean(model)
    if variant == "compiled-own":
        for module in model.modules():
            if type(module).__name__ == "LeanLlamaMLP":
                module.__class__ = type(module).__mro__[1]  # transformers' LlamaMLP
    if variant.startswith("compiled"):
        for layer in decoder_layers(model):
            layer.compile(backend=backend)
    model.train()
    ids = torch.randint(0, CONFIG["vocab_size"], (1, tokens), generator=torch.Generator().manual_seed(1))
    for _ in range(2):  # compiles, and what stays allocated for good (kernels' caches, the rotary table) stays out
        model(input_ids=ids, labels=ids).loss.backward()
        model.zero_grad(set_to_none=True)
    no_logits = torch.zeros(0, dtype=torch.long)  # the layers' bytes, as the plan counts them: no head, no loss
    with held_after() as held:
        output = model(input_ids=ids, logits_to_keep=no_logits)
    del output
    return {"bytes_per_token": held.bytes / tokens}


def planned(dtype: str, *, lean: bool, compiled: bool = False) -> float:
    from kubetune_trainer.memory_model import ModelShape, TrainingSetup, activation_bytes_per_token

    shape = ModelShape.from_config(CONFIG)
    bf16 = dtype == "bfloat16"
    device, precision = ("cuda", "bf16") if bf16 else ("cpu", "fp32")
    setup = TrainingSetup.for_run(
        shape, device=device, precision=precision, lean_norms=lean, lean_mlp=lean, compiled=compiled
    )
    return float(activation_bytes_per_token(shape, setup))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (inductor needs a C++ compiler)")
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    add_variant_options(parser, variants=VARIANTS)
    args = parser.parse_args()
    if args.run_variant:
        figures = held_per_token(variant=args.run_variant, dtype=args.dtypes, backend=args.backend, tokens=args.tokens)
        print("FIGURES " + json.dumps(figures))
        return 0
    print(f"backend {args.backend}, {args.tokens} tokens, Llama {CONFIG}")
    print("| dtype | variant | bytes kept per token | / the eager lean plan |")
    print("| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as workdir:
        for dtype in args.dtypes.split(","):
            plan = planned(dtype, lean=True)
            for variant in VARIANTS:
                flags = ["--dtypes", dtype, "--backend", args.backend, "--tokens", str(args.tokens)]
                held = spawn_variant(__file__, variant, workdir=Path(workdir), flags=flags)["bytes_per_token"]
                print(f"| {dtype} | {variant} | {held:,.0f} | {held / plan:.3f} |", flush=True)
            own = planned(dtype, lean=False)
            compiled = planned(dtype, lean=True, compiled=True)
            print(f"| {dtype} | the plan: lean, eager | {plan:,.0f} | 1.000 |")
            print(f"| {dtype} | the plan: lean, compiled | {compiled:,.0f} | {compiled / plan:.3f} |")
            print(f"| {dtype} | the plan: transformers' own | {own:,.0f} | {own / plan:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
