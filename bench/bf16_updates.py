"""How many AdamW updates pure bf16 training rounds away, and whether master weights or compensation keep them.

    .venv/bin/python bench/bf16_updates.py [--steps 10] [--tokens 1024]

A random Llama (hidden 512, intermediate 1024, 6 layers, 8 heads, 4 KV heads, vocab 4096,
transformers' init: normal, std 0.02, as Llama's `initializer_range`) trains in fp32 on random
token rows (real gradients of a real loss). At every step each weight's fp32 AdamW update u is
taken, and the update counts as lost when round_bf16(round_bf16(w) + u) == round_bf16(w): what
pure bf16 training (bf16 weights, AdamW writing into them) would do with it. Printed per
learning rate: the share of updates lost, and the share of weights that after `--steps` steps
still hold their starting bf16 value under pure bf16, bf16 with Kahan compensation, and an fp32
master copy, against the fp32 run's (weights that moved at all in fp32).
"""

from __future__ import annotations

import argparse

import torch
from synthetic import random_llama


def run(learning_rate: float, *, steps: int, tokens: int) -> dict[str, float]:
    model = random_llama(
        seed=0, hidden_size=512, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=8,
        num_key_value_heads=4, vocab_size=4096, use_cache=False,
    )  # fmt: skip
    matrices = [p for p in model.parameters() if p.dim() == 2]
    with torch.no_grad():
        for p in matrices:
            p.copy_(p.bfloat16().float())  # start from bf16-representable weights, as a bf16 checkpoint does
    optimizer = torch.optim.AdamW(matrices, lr=learning_rate, weight_decay=0.0)
    start = [p.detach().bfloat16() for p in matrices]
    pure = [s.clone() for s in start]
    compensated = [s.clone() for s in start]
    compensation = [torch.zeros_like(s) for s in start]
    lost = total = 0
    for _ in range(steps):
        ids = torch.randint(0, 4096, (1, tokens))
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        before = [p.detach().clone() for p in matrices]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for i, (p, b) in enumerate(zip(matrices, before, strict=True)):
                update = p - b
                lost += int((((b.bfloat16().float() + update).bfloat16()) == b.bfloat16()).sum())
                total += update.numel()
                pure[i] = (pure[i].float() + update).bfloat16()
                exact = compensated[i].float() + compensation[i].float() + update
                compensated[i] = exact.bfloat16()
                compensation[i] = (exact - compensated[i].float()).bfloat16()
    moved = {
        "fp32 master": sum(int((p.detach().bfloat16() != s).sum()) for p, s in zip(matrices, start, strict=True)),
        "bf16 compensated": sum(int((c != s).sum()) for c, s in zip(compensated, start, strict=True)),
        "pure bf16": sum(int((q != s).sum()) for q, s in zip(pure, start, strict=True)),
    }
    reference = max(moved["fp32 master"], 1)
    return {"lost per step": lost / total, **{name: count / reference for name, count in moved.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"{'learning rate':>13}  {'updates lost':>12}  weights whose bf16 value moved, vs fp32 master")
    print(f"{'':>13}  {'(pure bf16)':>12}  {'pure bf16':>10} {'compensated':>12}")
    for learning_rate in (1e-5, 1e-4, 1e-3):
        figures = run(learning_rate, steps=args.steps, tokens=args.tokens)
        print(
            f"{learning_rate:>13.0e}  {figures['lost per step']:>12.1%}  {figures['pure bf16']:>10.1%} "
            f"{figures['bf16 compensated']:>12.1%}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
