"""The output head and cross-entropy in chunks: checkpointed chunks against gradients taken in the forward.

    .venv/bin/python bench/loss_head.py [--tokens 8192] [--hidden 512] [--vocab 32000] [--chunk 1024] [--rounds 3]
    python bench/loss_head.py --tokens 16384 --hidden 2048 --vocab 128256 --chunk 2092   # on a GPU: Llama 3's head

Both paths compute the summed cross-entropy of `hidden @ head.T` over the same positions, forward
and backward, for a head that trains (full fine-tuning) and a frozen one (LoRA):

  checkpointed   each chunk a torch.utils.checkpoint region, recomputed in backward (what a
                 soft-capped or LoRA-adapted head still runs: training.loss.checkpointed_chunks_loss)
  forward-grad   training.linear_cross_entropy: each chunk's gradients taken while its logits exist

Prints seconds per forward+backward (CPU seconds on a CPU, CUDA-synced wall seconds on a GPU; best
of --rounds), the peak memory over the inputs (CUDA max_memory_allocated; on a CPU the process's
peak RSS growth, which needs MALLOC_MMAP_THRESHOLD_ set to follow live bytes, so each path runs in
its own process with it), the largest difference of loss and gradients between the two, and
forward-grad / checkpointed.
"""

# ruff: noqa: PLC0415 - the ML stack is imported in the measuring processes only.

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from process_memory import memory_mark, peak_memory
from variant_process import add_variant_options, spawn_variant

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "trainer_image"))

PATHS = ("checkpointed", "forward-grad")


def run_path(
    name: str, *, tokens: int, hidden_size: int, vocab: int, chunk: int, head_trains: bool, rounds: int
) -> dict[str, Any]:
    import torch

    from kubetune_trainer.training.linear_cross_entropy import linear_cross_entropy
    from kubetune_trainer.training.loss import OutputHead, checkpointed_chunks_loss

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    generator = torch.Generator(device=device).manual_seed(0)
    head = torch.nn.Linear(hidden_size, vocab, bias=False, device=device, dtype=dtype)
    with torch.no_grad():
        head.weight.normal_(std=0.02, generator=generator)
    head.weight.requires_grad_(head_trains)
    hidden = torch.randn(tokens, hidden_size, device=device, dtype=dtype, generator=generator).requires_grad_()
    targets = torch.randint(0, vocab, (tokens,), device=device, generator=generator)
    targets[::5] = -100  # unscored positions, as masked prompts give

    def step() -> tuple[float, list[Any]]:
        hidden.grad = None
        head.weight.grad = None
        if name == "forward-grad":
            loss = linear_cross_entropy(hidden, head.weight, targets, chunk_tokens=chunk)
        else:
            as_output = OutputHead(module=head, vocab=vocab, softcap=None)
            loss = checkpointed_chunks_loss(as_output, hidden, targets, chunk_tokens=chunk)
        (loss / tokens).backward()
        grads = [hidden.grad] + ([head.weight.grad] if head_trains else [])
        return float(loss.detach()), [g.float().cpu() for g in grads]

    step()  # warm-up
    before = memory_mark()
    best = float("inf")
    for _ in range(rounds):
        if cuda:
            torch.cuda.synchronize()
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        loss, grads = step()
        if cuda:
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start_wall) if cuda else (time.process_time() - start_cpu))
    peak = peak_memory()
    saved = Path(tempfile.gettempdir()) / f"loss_head_{name}_{head_trains}_{os.getppid()}.pt"
    torch.save({"loss": loss, "grads": grads}, saved)
    return {"seconds": best, "peak_over_inputs_mb": max(peak - before, 0) / 2**20, "cuda": cuda, "saved": str(saved)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    add_variant_options(parser)
    parser.add_argument("--head-trains", choices=("yes", "no"), default="yes", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = {"tokens": args.tokens, "hidden_size": args.hidden, "vocab": args.vocab, "chunk": args.chunk}
    if args.run_variant:
        figures = run_path(args.run_variant, **sizes, head_trains=args.head_trains == "yes", rounds=args.rounds)
        print("FIGURES " + json.dumps(figures))
        return

    import torch

    os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"  # the children's RSS then follows their live bytes
    flags = [f"--{k}" for k in ("tokens", "hidden", "vocab", "chunk", "rounds")]
    values = [args.tokens, args.hidden, args.vocab, args.chunk, args.rounds]
    common = [str(x) for pair in zip(flags, values, strict=True) for x in pair]
    load = os.getloadavg()
    print(
        f"{args.tokens} positions, hidden {args.hidden}, vocab {args.vocab}, chunks of {args.chunk}, "
        f"best of {args.rounds}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print("| head | path | seconds per fwd+bwd | peak over the inputs MB |")
    print("| --- | --- | --- | --- |")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for head_trains in ("yes", "no"):
            results = {}
            for name in PATHS:
                results[name] = spawn_variant(
                    __file__, name, workdir=Path(tmp), flags=[*common, "--head-trains", head_trains]
                )
                f = results[name]
                label = "trains (full)" if head_trains == "yes" else "frozen (LoRA)"
                print(f"| {label} | {name} | {f['seconds']:.3f} | {f['peak_over_inputs_mb']:.0f} |")
            a, b = (torch.load(results[n]["saved"]) for n in PATHS)
            for n in PATHS:
                Path(results[n]["saved"]).unlink()
            difference = max([abs(a["loss"] - b["loss"]) / abs(a["loss"])] + [
                float((x - y).abs().max() / y.abs().max()) for x, y in zip(b["grads"], a["grads"], strict=True)
            ])  # fmt: skip
            new, old = results["forward-grad"], results["checkpointed"]
            ratios.append(
                f"head {'trains' if head_trains == 'yes' else 'frozen'}: forward-grad / checkpointed time "
                f"{new['seconds'] / old['seconds']:.2f}, peak "
                f"{new['peak_over_inputs_mb'] / max(old['peak_over_inputs_mb'], 1e-9):.2f}; "
                f"largest relative difference {difference:.1e}"
            )
    print("\n".join(ratios))


if __name__ == "__main__":
    main()
