"""One attention layer on a packed row, forward and backward: the dense block mask against kubetune's kernels.

    python bench/attention_kernels.py [--tokens 512,2048] [--heads 4 --kv-heads 2 --head-dim 64] [--threads 1]
    python bench/attention_kernels.py --tokens 8192 --heads 16 --kv-heads 16 --head-dim 192 --value-head-dim 128
        # DeepSeek's compressed attention: query and key heads wider than the values (varlen pads the values)

A row of `--tokens` tokens packs examples of 30-300 tokens (on a GPU: 42-2,013, the issue's data),
with random q, k and v. Timed, each after two warm-up calls:

  dense     sdpa with the block-diagonal causal mask transformers builds for a packed row (the old path)
  sdpa      kubetune's per-example sdpa (`training.attention.per_example_attention`)
  varlen    torch's varlen flash kernel (CUDA only)
  flex      compiled flex_attention with the document BlockMask (CUDA only)

Times are CPU time on a CPU (steady under a shared machine's load), synchronised wall time on a GPU.
The last column is each kernel's speed-up over the dense mask, measured in the same run.
"""

# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "trainer_image"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", default="512,2048")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--value-head-dim", type=int, default=None, help="default: --head-dim")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name() if cuda else "cpu"
    clock = "wall" if cuda else "CPU"
    value_dim = args.value_head_dim or args.head_dim
    print(f"device {name}, {args.threads} thread(s), torch {torch.__version__}; {clock} time per call")
    print(f"{args.heads} heads of {args.head_dim} (values {value_dim}), {args.kv_heads} KV heads")
    print("| tokens | examples | kernel | ms per layer (fwd+bwd) | speed-up over dense |")
    print("|---|---|---|---|---|")
    rng = random.Random(0)
    for total in (int(t) for t in args.tokens.split(",")):
        lengths = _lengths(total, rng, low_high=(42, 2013) if cuda else (30, 300))
        baseline = None
        for kernel, function in _kernels(total, lengths, args).items():
            try:
                ms = _timed(function, repeats=args.repeats)
            except Exception as failed:  # a kernel this machine lacks: say so, go on
                print(f"| {total} | {len(lengths)} | {kernel} | failed: {type(failed).__name__} | |")
                continue
            baseline = baseline or ms
            print(f"| {total} | {len(lengths)} | {kernel} | {ms:.2f} | {baseline / ms:.1f}x |")
    return 0


def _lengths(total: int, rng: random.Random, *, low_high: tuple[int, int]) -> list[int]:
    lengths: list[int] = []
    while sum(lengths) < total:
        lengths.append(rng.randint(*low_high))
    lengths[-1] -= sum(lengths) - total
    return lengths


def _kernels(total: int, lengths: list[int], args: argparse.Namespace) -> dict[str, Callable[[], Any]]:
    import torch
    from torch.nn import functional

    from kubetune_trainer.training.attention import (
        cumulative_lengths,
        flex_document_attention,
        per_example_attention,
        varlen_attention,
    )

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    cu = cumulative_lengths(lengths).to(device)

    def tensor(heads: int, size: int = args.head_dim) -> torch.Tensor:
        return torch.randn(1, heads, total, size, device=device, dtype=dtype, requires_grad=True)

    q, k, v = tensor(args.heads), tensor(args.kv_heads), tensor(args.kv_heads, args.value_head_dim or args.head_dim)
    scale = args.head_dim**-0.5
    document = torch.repeat_interleave(torch.arange(len(lengths), device=device), cu.diff().long())
    index = torch.arange(total, device=device)

    def dense() -> torch.Tensor:
        mask = (document[:, None] == document[None, :]) & (index[:, None] >= index[None, :])
        return functional.scaled_dot_product_attention(q, k, v, attn_mask=mask[None, None], enable_gqa=True)

    kernels: dict[str, Callable[[], Any]] = {
        "dense": dense,
        "sdpa": lambda: per_example_attention(q, k, v, lengths, scale=scale),
    }
    if cuda:
        kernels["varlen"] = lambda: varlen_attention(q, k, v, cu, max(lengths), scale=scale, window=None)
        kernels["flex"] = lambda: flex_document_attention(q, k, v, cu, scale=scale)
    return kernels


def _timed(function: Callable[[], Any], *, repeats: int) -> float:
    """Milliseconds per forward and backward call: wall time on a GPU (synchronised), CPU time on a CPU."""
    import torch

    cuda = torch.cuda.is_available()
    clock = time.perf_counter if cuda else time.process_time

    def once() -> None:
        function().float().sum().backward()

    for _ in range(2):
        once()
    if cuda:
        torch.cuda.synchronize()
    started = clock()
    for _ in range(repeats):
        once()
    if cuda:
        torch.cuda.synchronize()
    return (clock() - started) / repeats * 1e3


if __name__ == "__main__":
    raise SystemExit(main())
