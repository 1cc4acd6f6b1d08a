"""LoRA's update, peft's forward against the fused one (`training.lora_fused`), on the same model and rows.

    .venv/bin/python bench/lora_update.py [--steps 6] [--rounds 2] [--tokens 2048] [--shape 14m|1b] [--dropout 0.1]

A random Llama (`--shape 14m`: hidden 512, intermediate 1024, 6 layers, 8 heads, 4 KV heads, vocab
512, the model of bench/lora_memory.py; `1b`: Llama-3.2-1B's shape, for a GPU) gets LoRA at the
template's defaults (r 64, alpha 128, all-linear) and trains forward, backward and AdamW on one
row of `--tokens` random tokens, two ways:

  peft    peft's `Linear.forward`: result + lora_B(lora_A(x)) * scaling
  fused   the trainer's: the base output takes the update in place, out.addmm_(A(x), B.T, alpha=scaling)

Each variant runs in its own process, `--rounds` times interleaved, the best round counting. On a
CPU (fp32, as the trainer runs there) it reports CPU seconds per step and the process's peak RSS
over its RSS before the first step, once with glibc's default allocator and once with
`MALLOC_MMAP_THRESHOLD_=131072`, under which RSS follows live tensor bytes (docs/performance.md,
"The fixed mmap threshold"). On CUDA (bf16 weights, bf16 autocast, fp32 adapters, as the trainer
runs there) it reports milliseconds per step and `torch.cuda.max_memory_allocated` over the
allocated bytes before the first step. Prints fused / peft for each figure.
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

from process_memory import train_on_one_row
from variant_process import add_variant_options, print_step_table, spawn_variant

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "trainer_image"))

SHAPES: dict[str, dict[str, Any]] = {
    "14m": {
        "hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 6, "num_attention_heads": 8,
        "num_key_value_heads": 4, "vocab_size": 512,
    },
    "1b": {
        "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256, "tie_word_embeddings": True,
    },
}  # fmt: skip
VARIANTS = ("peft", "fused")
MMAP_THRESHOLD = "131072"


def run_variant(name: str, *, shape: str, tokens: int, steps: int, dropout: float) -> dict[str, float]:
    import torch
    from synthetic import random_llama

    from kubetune_trainer.contract import LoraConfig
    from kubetune_trainer.training.lora import apply_lora, keep_adapter_inputs_as_they_come
    from kubetune_trainer.training.lora_fused import fuse_lora_updates

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.manual_seed(0)
    model: Any = random_llama(
        seed=0, device=device.type, dtype=torch.bfloat16 if cuda else torch.float32, attn_implementation="sdpa",
        max_position_embeddings=max(tokens, 2048), use_cache=False, **SHAPES[shape],
    )  # fmt: skip
    model = apply_lora(model, LoraConfig(r=64, alpha=128, dropout=dropout, target_modules=["all-linear"], merge=False))
    model.to(device)
    model.train()  # as the training loop sets it: dropout drops
    if cuda:
        keep_adapter_inputs_as_they_come(model)
    if name == "fused":
        fuse_lora_updates(model)
    ids = torch.randint(0, int(model.config.vocab_size), (1, tokens), generator=torch.Generator().manual_seed(1))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    return train_on_one_row(model, ids.to(device), steps=steps, autocast=autocast, learning_rate=1e-4)


def _spawn(name: str, workdir: Path, flags: list[str], *, mmap_threshold: bool) -> dict[str, float]:
    saved = os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)
    try:
        environ = {"MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD} if mmap_threshold else {}
        return spawn_variant(__file__, name, workdir=workdir, flags=flags, environ=environ)
    finally:
        if saved is not None:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = saved


def best_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's best (lowest) over the rounds: the neighbours' load only ever adds."""
    return {key: min(r[key] for r in rounds) for key in rounds[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant, after one warm-up step")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=2048, help="tokens in the row each step trains on")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="14m")
    parser.add_argument("--dropout", type=float, default=0.0, help="lora.dropout (the template's default is 0)")
    add_variant_options(parser)
    args = parser.parse_args()
    if args.run_variant:
        figures = run_variant(
            args.run_variant, shape=args.shape, tokens=args.tokens, steps=args.steps, dropout=args.dropout
        )
        print("FIGURES " + json.dumps(figures))
        return

    flags = ["--shape", args.shape, "--tokens", str(args.tokens), "--steps", str(args.steps)]
    flags += ["--dropout", str(args.dropout)]
    allocators = {"glibc default": False, f"MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}": True}
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for allocator, threshold in allocators.items():
                for name in VARIANTS:
                    figures = _spawn(name, Path(tmp), flags, mmap_threshold=threshold)
                    results.setdefault((allocator, name), []).append(figures)
                if figures["device"]:
                    break  # the CUDA allocator ignores glibc's switch: one row per variant is enough
    best = {key: best_of(rounds) for key, rounds in results.items()}
    cuda = next(iter(best.values()))["device"] == 1.0
    load = os.getloadavg()
    print(
        f"shape {args.shape}, lora.dropout {args.dropout}, {args.tokens} tokens per step, {args.steps} steps, "
        f"best of {args.rounds} rounds"
    )
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    time_key = print_step_table(best)
    for allocator in dict.fromkeys(a for a, _ in best):
        peft, fused = best[(allocator, "peft")], best[(allocator, "fused")]
        print(
            f"fused / peft ({allocator if not cuda else 'cuda'}): time per step "
            f"{fused[time_key] / peft[time_key]:.2f}, peak over the model "
            f"{fused['peak_over_start_mb'] / peft['peak_over_start_mb']:.2f}"
        )


if __name__ == "__main__":
    main()
