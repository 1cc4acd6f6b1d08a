"""The lean RMSNorms and SwiGLU MLPs (`training.lean_layers`) against transformers' own, full and LoRA.

    .venv/bin/python bench/lean_layers.py [--steps 6] [--rounds 2] [--tokens 2048] [--shape 14m|1b]

A random Llama (`--shape 14m`: the model of bench/lora_memory.py; `1b`: Llama-3.2-1B's shape, for a
GPU) trains forward, backward and AdamW on one row of `--tokens` random tokens, four ways, each in a
process of its own, `--rounds` times interleaved, the best round counting:

  full-own    full fine-tuning, transformers' RMSNorm and MLP forwards
  full-lean   full fine-tuning, the trainer's lean forwards
  lora-own    LoRA at the template's defaults (r 64, alpha 128, all-linear, the fused update)
  lora-lean   the same with the lean forwards

On a CPU (fp32, as the trainer runs there) it reports CPU seconds per step and the peak RSS over the
RSS before the first step, with glibc's default allocator and with `MALLOC_MMAP_THRESHOLD_=131072`
(RSS then follows live tensor bytes: docs/performance.md, "The fixed mmap threshold"). On CUDA (bf16
weights; LoRA's adapters fp32 under bf16 autocast, as the trainer runs them) milliseconds per step and
`torch.cuda.max_memory_allocated` over the bytes allocated before the first step. Prints lean / own
for each figure, and each variant's last loss (lean and own must agree).
"""

# ruff: noqa: PLC0415 - each variant's process imports the ML stack; the parent does not.

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from lora_update import MMAP_THRESHOLD, SHAPES, best_of
from process_memory import train_on_one_row
from variant_process import add_variant_options, print_step_table, spawn_variant

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "trainer_image"))

VARIANTS = ("full-own", "full-lean", "lora-own", "lora-lean")


def run_variant(name: str, *, shape: str, tokens: int, steps: int) -> dict[str, float]:
    import torch
    from synthetic import random_llama

    from kubetune_trainer.contract import LoraConfig
    from kubetune_trainer.training.lean_layers import make_layers_lean
    from kubetune_trainer.training.lora import apply_lora, keep_adapter_inputs_as_they_come
    from kubetune_trainer.training.lora_fused import fuse_lora_updates

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    lora = name.startswith("lora")
    torch.manual_seed(0)
    model: Any = random_llama(
        seed=0, device=device.type, dtype=torch.bfloat16 if cuda else torch.float32, attn_implementation="sdpa",
        max_position_embeddings=max(tokens, 2048), use_cache=False, **SHAPES[shape],
    )  # fmt: skip
    if name.endswith("lean"):
        make_layers_lean(model)
    if lora:
        model = apply_lora(model, LoraConfig(r=64, alpha=128, dropout=0.0, target_modules=["all-linear"], merge=False))
        fuse_lora_updates(model)
        if cuda:
            keep_adapter_inputs_as_they_come(model)
    model.to(device)
    model.train()
    ids = torch.randint(0, int(model.config.vocab_size), (1, tokens), generator=torch.Generator().manual_seed(1))
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16, enabled=lora) if cuda else torch.autocast("cpu", enabled=False)
    )
    return train_on_one_row(model, ids.to(device), steps=steps, autocast=autocast, learning_rate=1e-5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant, after one warm-up step")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=2048, help="tokens in the row each step trains on")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="14m")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS))
    add_variant_options(parser)
    args = parser.parse_args()
    if args.run_variant:
        figures = run_variant(args.run_variant, shape=args.shape, tokens=args.tokens, steps=args.steps)
        print("FIGURES " + json.dumps(figures))
        return

    names = [name for name in args.variants.split(",") if name]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    flags = ["--shape", args.shape, "--tokens", str(args.tokens), "--steps", str(args.steps)]
    os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)  # "glibc default" means the default: set per variant below
    allocators = {"glibc default": "", f"MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}": MMAP_THRESHOLD}
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for allocator, threshold in allocators.items():
                for name in names:
                    environ = {"MALLOC_MMAP_THRESHOLD_": threshold} if threshold else {}
                    figures = spawn_variant(__file__, name, workdir=Path(tmp), flags=flags, environ=environ)
                    results.setdefault((allocator, name), []).append(figures)
                if figures["device"]:
                    break  # the CUDA allocator ignores glibc's switch: one row per variant is enough
    best = {key: best_of(rounds) for key, rounds in results.items()}
    cuda = next(iter(best.values()))["device"] == 1.0
    load = os.getloadavg()
    print(f"shape {args.shape}, {args.tokens} tokens per step, {args.steps} steps, best of {args.rounds} rounds")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    time_key = print_step_table(best)
    for allocator in dict.fromkeys(a for a, _ in best):
        for mode in ("full", "lora"):
            own, lean = best.get((allocator, f"{mode}-own")), best.get((allocator, f"{mode}-lean"))
            if own and lean:
                print(
                    f"{mode} lean / own ({'cuda' if cuda else allocator}): time per step "
                    f"{lean[time_key] / own[time_key]:.2f}, peak over the model "
                    f"{lean['peak_over_start_mb'] / own['peak_over_start_mb']:.2f}"
                )


if __name__ == "__main__":
    main()
