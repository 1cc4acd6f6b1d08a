"""Time to the first compiled training steps: the decoder layers compiled static first (before 778a8e6) or dynamic.

    .venv/bin/python bench/compile_time.py [--steps 4] [--backend inductor]

`training.compile.compile_layers` compiles the decoder layers and proves them with a probe pass on a
small packed row. Every packed micro-batch has its own length and document count, so a layer compiled
static first (torch.compile's default) is compiled for the probe's shapes, then again when the first
real micro-batch arrives (dynamo's automatic dynamic shapes), and again for the next input that
changes; compiled with dynamic shapes from the first trace, the probe's graph serves them all. Each
variant runs in a process of its own, on the model of bench/compiled_keeps.py (Llama-3.2-1B's
proportions at 1/8 of its width, lean layers) with the varlen attention path a GPU runs, its CUDA
kernel stood in for by causal sdpa over the row, fp32 on the CPU, each with a cold compiler cache
(a fresh pod's):

  static-first  `layer.compile()` on each layer, then the probe pass (the trainer before 778a8e6)
  dynamic       `compile_layers` as the trainer runs it

It prints the seconds from compiling to the probe's end and to the end of `--steps` AdamW steps on
packed rows of 2-6 examples of 20-400 tokens, the graphs dynamo compiled, and the mean of the last
two steps (the compiled code's own speed, which should not differ).
"""

# ruff: noqa: PLC0415 - each variant's process imports the ML stack; the parent does not.

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from compiled_keeps import CONFIG
from variant_process import add_variant_options, spawn_variant

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "trainer_image"))

VARIANTS = ("static-first", "dynamic")


def _stand_in(q: Any, k: Any, v: Any, cu_q: Any, cu_k: Any, max_q: Any, max_k: Any, **options: Any) -> Any:  # noqa: PLR0917 (varlen_attn's own signature)
    """varlen_attn's shapes on a CPU: causal sdpa over the whole row (traceable; documents not separated)."""
    from torch.nn import functional

    heads = [tensor.transpose(0, 1)[None] for tensor in (q, k, v)]
    out = functional.scaled_dot_product_attention(*heads, is_causal=True, scale=options["scale"], enable_gqa=True)
    return out[0].transpose(0, 1)


def run(variant: str, *, steps: int, backend: str) -> dict[str, Any]:
    """In the variant's own process: compile, probe, train `steps` steps; the timings and graph count."""
    import torch
    from torch._dynamo.utils import counters
    from transformers import AutoModelForCausalLM, LlamaConfig

    from kubetune_trainer.contract import AttentionKernel
    from kubetune_trainer.data.packing import collate_packed
    from kubetune_trainer.data.tokenization import TokenizedExample
    from kubetune_trainer.training import attention
    from kubetune_trainer.training.compile import compile_layers, decoder_layers, probe_pass
    from kubetune_trainer.training.lean_layers import make_layers_lean
    from kubetune_trainer.training.loss import summed_label_loss

    attention._RESOLVED["varlen"] = attention._VarlenApi(function=_stand_in, window=True, gqa=True, scale=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**CONFIG))
    make_layers_lean(model)
    attention.use_attention(model, AttentionKernel.VARLEN)
    model.train()
    vocab, cpu = CONFIG["vocab_size"], torch.device("cpu")
    started = time.perf_counter()
    if variant == "static-first":
        for layer in decoder_layers(model):
            layer.compile(backend=backend)
        probe_pass(model, device=cpu, vocab_size=vocab)
    else:
        outcome = compile_layers(model, requested=True, device=cpu, vocab_size=vocab, backend=backend)
        assert outcome.compiled, outcome.reason
    probed = time.perf_counter() - started
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    generator = torch.Generator().manual_seed(1)
    ends = []
    for _ in range(steps):
        count = int(torch.randint(2, 7, (1,), generator=generator))
        lengths = torch.randint(20, 401, (count,), generator=generator).tolist()
        rows = [torch.randint(0, vocab, (n,), generator=generator).tolist() for n in lengths]
        batch = collate_packed([TokenizedExample(input_ids=ids, labels=ids) for ids in rows])
        (summed_label_loss(model, batch) / batch.label_tokens).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ends.append(time.perf_counter() - started)
    last_two = (ends[-1] - ends[-3]) / 2 if steps >= 3 else float("nan")
    return {
        "probe_s": probed,
        "steps_s": ends[-1],
        "graphs": int(counters["stats"]["unique_graphs"]),
        "last_steps_s": last_two,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (inductor needs a C++ compiler)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    add_variant_options(parser, variants=VARIANTS)
    args = parser.parse_args()
    if args.run_variant:
        print("FIGURES " + json.dumps(run(args.run_variant, steps=args.steps, backend=args.backend)))
        return 0
    print(f"backend {args.backend}, {args.steps} steps, Llama {CONFIG}")
    print("| variant | s to the probe's end | s to the last step's end | graphs compiled | s per step, last two |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as workdir:
        for variant in args.variants.split(","):
            flags = ["--steps", str(args.steps), "--backend", args.backend]
            # A cold compiler cache, as on a fresh pod: inductor's and triton's caches would make the second
            # compile of the same graph nearly free.
            cache = Path(workdir) / variant
            environ = {"TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"), "TRITON_CACHE_DIR": str(cache / "triton")}
            f = spawn_variant(__file__, variant, workdir=Path(workdir), flags=flags, environ=environ)
            print(
                f"| {variant} | {f['probe_s']:.1f} | {f['steps_s']:.1f} | {f['graphs']} | {f['last_steps_s']:.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
