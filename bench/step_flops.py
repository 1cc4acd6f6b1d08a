"""FLOPs of one training step (forward and backward), full fine-tuning against LoRA, at Llama-3.2-1B's shape.

    .venv/bin/python bench/step_flops.py [--layers 2] [--tokens 1024] [--rank 64]

A random Llama with Llama-3.2-1B's widths (hidden 2048, intermediate 8192, 32 heads of 64, 8 KV heads,
vocab 128,256, tied) and `--layers` decoder layers, made as the trainer makes it (lean norms and
MLPs; LoRA all-linear at `--rank`, the update fused into the base output), runs the trainer's loss
(`training.loss.summed_label_loss`, chunked) and its backward on one packed row of four examples,
under torch's FlopCounterMode (matmuls and attention). It prints each variant's FLOPs per token over
the parameter count (6 for full fine-tuning by the usual count), the last decoder layer's FLOPs, and
LoRA's over full fine-tuning's, also projected to `--project-layers` (the model's own depth): the
bound on how much faster LoRA's step can be where the matmuls set the time. torch counts no FLOPs
for an in-place `addmm_`, so the fused update's forward product (2 x rank x out per token and
adapter, about 1% of a layer's) is missing from LoRA's figures.
fp32 on the CPU (FLOPs do not depend on the dtype); about a minute at the defaults.
"""

# ruff: noqa: PLC0415 - the ML stack is imported where it is used.

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "trainer_image"))

LLAMA_1B_WIDTHS = {
    "hidden_size": 2048, "intermediate_size": 8192, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 64, "vocab_size": 128256, "tie_word_embeddings": True, "use_cache": False,
}  # fmt: skip
EXAMPLES = 4


def step_flops(*, lora_rank: int | None, layers: int, tokens: int) -> tuple[int, int, int]:
    """(FLOPs of the step, FLOPs of the last decoder layer, parameters) for full fine-tuning (None) or LoRA."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForCausalLM, LlamaConfig

    from kubetune_trainer.contract import LoraConfig
    from kubetune_trainer.data.packing import collate_packed
    from kubetune_trainer.data.tokenization import TokenizedExample
    from kubetune_trainer.training.lean_layers import make_layers_lean
    from kubetune_trainer.training.lora import apply_lora
    from kubetune_trainer.training.lora_fused import fuse_lora_updates
    from kubetune_trainer.training.loss import summed_label_loss

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(num_hidden_layers=layers, **LLAMA_1B_WIDTHS))
    make_layers_lean(model)
    if lora_rank is not None:
        adapters = LoraConfig(r=lora_rank, alpha=2 * lora_rank, dropout=0.0, target_modules=["all-linear"], merge=False)
        model = apply_lora(model, adapters)
        fuse_lora_updates(model)
    model.train()
    length = tokens // EXAMPLES
    ids = list(range(1, length + 1))
    batch = collate_packed([TokenizedExample(input_ids=ids, labels=ids) for _ in range(EXAMPLES)])
    with FlopCounterMode(display=False) as counter:
        summed_label_loss(model, batch).backward()
    # The last layer: under LoRA the first one's q, k and v need no input gradient (nothing below trains).
    last = f"model.layers.{layers - 1}"
    layer = next(flops for name, flops in counter.get_flop_counts().items() if name.endswith(last))
    return counter.get_total_flops(), sum(layer.values()), sum(p.numel() for p in model.parameters())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--project-layers", type=int, default=16, help="the whole model's depth (1B: 16)")
    args = parser.parse_args()
    tokens = args.tokens // EXAMPLES * EXAMPLES
    figures = {}
    print(f"Llama-3.2-1B widths, {args.layers} layers, one packed row of {tokens} tokens ({EXAMPLES} examples)")
    print("| variant | step TFLOP | FLOPs per token / parameters | the last decoder layer, GFLOP |")
    print("| --- | --- | --- | --- |")
    for name, rank in (("full", None), (f"LoRA r {args.rank}", args.rank)):
        total, layer, parameters = step_flops(lora_rank=rank, layers=args.layers, tokens=tokens)
        figures[name] = (total, layer)
        print(f"| {name} | {total / 1e12:.3f} | {total / tokens / parameters:.2f} | {layer / 1e9:.1f} |", flush=True)
    (full_total, full_layer), (lora_total, lora_layer) = figures.values()
    # Layers past the first all count as the last one does: the step at the model's own depth.
    extra = args.project_layers - args.layers
    full_deep, lora_deep = full_total + extra * full_layer, lora_total + extra * lora_layer
    print(f"LoRA / full: one decoder layer {lora_layer / full_layer:.3f}; the step at {args.layers} layers "
          f"{lora_total / full_total:.3f}, at {args.project_layers} layers {lora_deep / full_deep:.3f} "
          f"({full_deep / 1e12:.2f} against {lora_deep / 1e12:.2f} TFLOP): where matmuls set the time, "
          f"LoRA at most {full_deep / lora_deep:.2f}x full fine-tuning's tok/s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
