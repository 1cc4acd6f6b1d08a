"""GPU throughput: kubetune's Training stage against the Hugging Face Trainer, on one GPU, in one run.

    python bench/gpu_throughput.py [--steps 24] [--batch-size 24] [--micro-batch 8]
        [--variants hf-padded,kubetune,kubetune-lora] [--tiny]

One model, one data set and one effective batch for every variant. By default the model is a
random Llama-3.2-1B shape (hidden 2048, 16 layers, 32 heads, 8 KV heads, vocab 128,256, tied
embeddings: 1.24 B parameters) in bf16, and the data are chat examples of 42 to 2,013 tokens
(loss on the assistant part, 20-50% of each example masked as the prompt), token ids drawn at
random, the same ids for every variant. Variants, each in a process of its own:

  hf-padded         the HF Trainer: bf16, sdpa, dynamic padding (DataCollatorForSeq2Seq),
                    --micro-batch rows per forward, gradient accumulation up to --batch-size
  kubetune          kubetune's Initialization and Training stages as a job runs them (packing,
                    the template defaults: attention auto, no compile)
  kubetune-compile  the same with `compile: true`
  kubetune-lora     LoRA with the catalog's defaults (r 64, alpha 128, all-linear)
  kubetune-lora-compile  the same with `compile: true`, LoRA's match for kubetune-compile (the
                    1B template compiles by default, so this is what a LoRA job on it runs)

--count-syncs (a GPU run of its own: it slows the steps it watches) counts, in each kubetune variant's
steps after the warm-up, the calls that made the host wait for the GPU (torch.cuda's sync debug mode),
by the Python line that made them; the bench's own synchronize at each step end is among them.

Useful tokens/s counts real (non-pad) tokens over the steps after the first five, between step
ends with the GPU synchronised; MFU is 6 x parameters x tok/s over the GPU's dense bf16 peak
(`kubetune_trainer.training.gpu_stats`); peak memory is torch.cuda.max_memory_allocated. The
table ends with the ratios against hf-padded. --tiny runs the same plumbing with a 2-layer model
and short examples on the CPU (MFU and GPU memory are then n/a), so it is tested without a GPU.
"""

# Imports sit inside the functions on purpose: each variant's process loads only what it uses.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubetune_stages import run_stages
from synthetic import save_random_llama, token_examples
from variant_process import spawn_variant
from warm_up import WARM_STEPS, too_few_steps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "trainer_image"))

VARIANTS = ("hf-padded", "kubetune", "kubetune-compile", "kubetune-lora", "kubetune-lora-compile")
DEFAULT_VARIANTS = "hf-padded,kubetune,kubetune-lora"


@dataclass(frozen=True)
class Shape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    lengths: tuple[int, int]
    max_seq_length: int


LLAMA_1B = Shape(
    hidden=2048,
    intermediate=8192,
    layers=16,
    heads=32,
    kv_heads=8,
    vocab=128_256,
    lengths=(42, 2013),
    max_seq_length=2048,
)
TINY = Shape(
    hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, vocab=768, lengths=(16, 120), max_seq_length=128
)


@dataclass
class Figures:
    variant: str
    steps: int
    useful_tokens: int
    seconds: float
    peak_memory_bytes: int | None
    peak_rss_mb: float
    mfu: float | None
    parameters: int
    device: str
    paths: str
    final_loss: float
    host_syncs: str = ""
    """With --count-syncs: the syncs per step after the warm-up and where they came from."""

    @property
    def tokens_per_second(self) -> float:
        return self.useful_tokens / self.seconds if self.seconds > 0 else 0.0


# --------------------------------------------------------------------------- the job, built once


def build_job(workdir: Path, *, shape: Shape, steps: int, batch_size: int, seed: int) -> None:
    """The model (random weights, bf16 on a GPU), a tokenizer for its special ids, and the examples."""
    import torch

    vocab_size = save_random_llama(
        workdir / "model",
        hidden=shape.hidden,
        intermediate=shape.intermediate,
        layers=shape.layers,
        heads=shape.heads,
        kv_heads=shape.kv_heads,
        tokenizer_vocab=768,
        vocab_size=shape.vocab,
        max_positions=max(2048, shape.max_seq_length),
        tie=True,
        seed=seed,
        on_gpu=torch.cuda.is_available(),
    )
    examples = token_examples(steps * batch_size, rng=random.Random(seed), lengths=shape.lengths, vocab_size=vocab_size)
    (workdir / "examples.json").write_text(json.dumps(examples))


# --------------------------------------------------------------------------- one variant, in its own process


class _StepClock:
    def __init__(self) -> None:
        self.marks: list[float] = []

    def tick(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.marks.append(time.perf_counter())

    def seconds(self) -> float:
        return self.marks[-1] - self.marks[WARM_STEPS - 1]


class _SyncCount:
    """The host's waits for the GPU in each step after the warm-up, by the Python line that asked for them."""

    def __init__(self) -> None:
        self.per_step: list[int] = []
        self.where: Counter[str] = Counter()
        self._catcher: Any = None
        self._records: list[Any] | None = None

    def step_ended(self, step: int) -> None:
        import torch

        if not torch.cuda.is_available():
            return
        if self._records is not None:
            syncs = [r for r in self._records if "synchronizing CUDA operation" in str(r.message)]
            self.per_step.append(len(syncs))
            self.where.update(f"{Path(r.filename).name}:{r.lineno}" for r in syncs)
            self._records.clear()
        elif step == WARM_STEPS:
            self._catcher = warnings.catch_warnings(record=True)
            self._records = self._catcher.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

    def summary(self) -> str:
        import torch

        if self._catcher is None:
            return "n/a (no GPU)" if not torch.cuda.is_available() else "n/a (no step after the warm-up)"
        torch.cuda.set_sync_debug_mode("default")
        self._catcher.__exit__(None, None, None)
        where = ", ".join(f"{line} x{count}" for line, count in self.where.most_common(8))
        return f"{self.per_step} per step after the warm-up; from {where or 'nowhere'}"


def run_variant(
    name: str, workdir: Path, *, steps: int, batch_size: int, micro_batch: int, seed: int, count_syncs: bool = False
) -> Figures:
    import torch

    from kubetune_trainer.data.tokenization import TokenizedExample

    examples = [
        TokenizedExample(e["input_ids"], e["labels"]) for e in json.loads((workdir / "examples.json").read_text())
    ]
    if name == "hf-padded":
        figures = _hf_padded(workdir, examples, steps=steps, batch_size=batch_size, micro_batch=micro_batch, seed=seed)
    else:
        figures = _kubetune(
            name, workdir, examples, steps=steps, batch_size=batch_size, seed=seed, count_syncs=count_syncs
        )
    if torch.cuda.is_available():
        figures.peak_memory_bytes = int(torch.cuda.max_memory_allocated())
    figures.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def _stats(model: Any) -> Any:
    import torch

    from kubetune_trainer.training.gpu_stats import GpuStats

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return GpuStats.for_run(model, device=device, world_size=1)


def _useful_tokens(per_step: list[int], steps: int) -> int:
    return sum(per_step[WARM_STEPS:steps])


def _hf_padded(
    workdir: Path, examples: list[Any], *, steps: int, batch_size: int, micro_batch: int, seed: int
) -> Figures:
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    on_gpu = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(str(workdir / "model"))
    model = AutoModelForCausalLM.from_pretrained(
        str(workdir / "model"), dtype=torch.bfloat16 if on_gpu else torch.float32, attn_implementation="sdpa"
    )
    stats = _stats(model)
    pad = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    tokens_per_batch: list[int] = []  # in the order the batches are collated, which is the order they train

    def collate(features: list[dict[str, Any]]) -> Any:
        batch = pad([{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features])
        tokens_per_batch.append(int(batch["attention_mask"].sum()))
        return batch

    clock = _StepClock()

    class Tick(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            clock.tick()

    arguments = TrainingArguments(
        output_dir=str(workdir / "out-hf"),
        per_device_train_batch_size=micro_batch,
        gradient_accumulation_steps=max(1, batch_size // micro_batch),
        max_steps=steps,
        learning_rate=1e-5,
        lr_scheduler_type="cosine",
        warmup_steps=1,
        weight_decay=0.01,
        max_grad_norm=1.0,
        bf16=on_gpu,
        use_cpu=not on_gpu,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=seed,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    dataset = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    trainer = Trainer(model=model, args=arguments, train_dataset=dataset, data_collator=collate, callbacks=[Tick()])
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    accumulation = arguments.gradient_accumulation_steps
    per_step = [sum(tokens_per_batch[i : i + accumulation]) for i in range(0, len(tokens_per_batch), accumulation)]
    useful = _useful_tokens(per_step, steps)
    seconds = clock.seconds()
    return Figures(
        variant="hf-padded",
        steps=steps,
        useful_tokens=useful,
        seconds=seconds,
        peak_memory_bytes=None,
        peak_rss_mb=0.0,
        mfu=stats.mfu(useful / seconds),
        parameters=stats.parameters,
        device=stats.device_name,
        paths="sdpa with a padding mask, fp32 logits",
        final_loss=float(losses[-1]) if losses else math.nan,
    )


def _kubetune(
    name: str, workdir: Path, examples: list[Any], *, steps: int, batch_size: int, seed: int, count_syncs: bool
) -> Figures:
    from kubetune_trainer.training import loss as loss_module
    from kubetune_trainer.training.steps import BatchingPlan, EpochSteps

    clock = _StepClock()
    syncs = _SyncCount() if count_syncs else None

    def step_ended() -> None:
        clock.tick()
        if syncs is not None:
            syncs.step_ended(len(clock.marks))

    done = run_stages(
        model_dir=workdir / "model",
        work_dir=workdir / f"work-{name}",
        examples=examples,
        max_seq_length=max(len(e) for e in examples),
        batch_size=batch_size,
        learning_rate=1e-5,
        warmup_ratio=0.05,
        seed=seed,
        on_step=step_ended,
        lora=name.startswith("kubetune-lora"),
        compile_model=name.endswith("-compile"),
    )
    # Every optimizer step takes `batch_size` examples in the planner's order; count the same ones.
    plan = BatchingPlan(examples_per_step=batch_size, token_budget=10**9, packing=True, pad_token_id=0, seed=seed)
    per_step = [step.tokens for step in EpochSteps(examples, plan=plan, epoch=0)]
    useful = _useful_tokens(per_step, steps)
    seconds = clock.seconds()
    stats = _stats(done.initialized.model)
    setup = done.initialized.setup
    # The loss path is whatever training.loss says it is (LOSS_PATH), else the plain fp32 cross-entropy.
    loss_path = getattr(loss_module, "LOSS_PATH", "label positions only, fp32 logits")
    return Figures(
        variant=name,
        steps=steps,
        useful_tokens=useful,
        seconds=seconds,
        peak_memory_bytes=None,
        peak_rss_mb=0.0,
        mfu=stats.mfu(useful / seconds),
        parameters=stats.parameters,
        device=stats.device_name,
        paths=f"{setup.attention.message()}; {setup.compiled.message()}; loss: {loss_path}; {_plan(done.ctx)}",
        final_loss=done.train_losses[-1] if done.train_losses else math.nan,
        host_syncs=syncs.summary() if syncs is not None else "",
    )


def _plan(ctx: Any) -> str:
    """The memory plan as the run made it: what to hold its peak against (compiled runs included)."""
    plan = ctx.journal.memory_plan
    if plan is None:
        return "no memory plan"
    return (
        f"memory plan: budget {plan.token_budget:,} tokens ({plan.limited_by}), "
        f"{plan.activation_bytes_per_token / 1024:,.0f} KiB/token of activations, "
        f"{plan.static_bytes / 2**30:.1f} GiB of gradients and optimizer state"
    )


# --------------------------------------------------------------------------- the parent: run, compare, print


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=24, help="effective batch: examples per optimizer step")
    parser.add_argument("--micro-batch", type=int, default=8, help="rows per forward pass of the HF Trainer")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model and short examples (CPU plumbing check)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="keep the job here (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write every variant's figures here")
    parser.add_argument(
        "--count-syncs", action="store_true", help="count the host's waits for the GPU in kubetune's steps (a GPU only)"
    )
    parser.add_argument("--run-variant", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    refusal = too_few_steps(__file__, args.steps)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 2
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")

    if args.run_variant:
        figures = run_variant(
            args.run_variant,
            args.workdir,
            steps=args.steps,
            batch_size=args.batch_size,
            micro_batch=args.micro_batch,
            seed=args.seed,
            count_syncs=args.count_syncs,
        )
        print("FIGURES " + json.dumps(asdict(figures)))
        return 0

    with tempfile.TemporaryDirectory(prefix="kubetune-gpu-bench-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        shape = TINY if args.tiny else LLAMA_1B
        build_job(workdir, shape=shape, steps=args.steps, batch_size=args.batch_size, seed=args.seed)
        print(
            f"job: {args.steps} steps of {args.batch_size} examples of {shape.lengths[0]}-{shape.lengths[1]} tokens, "
            f"model hidden {shape.hidden} x {shape.layers} layers, vocab {shape.vocab}; "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        results = {}
        for name in args.variants.split(","):
            results[name] = _spawn(name, workdir, args)
            print(f"  {name}: {results[name].tokens_per_second:,.0f} tok/s; {results[name].paths}", flush=True)
            if results[name].host_syncs:
                print(f"  {name} host syncs: {results[name].host_syncs}", flush=True)
        print()
        for line in table(results):
            print(line)
        if args.json:
            args.json.write_text(json.dumps({name: asdict(f) for name, f in results.items()}, indent=1))
        print(f"total {time.perf_counter() - started:.0f} s")
    return 0


def _spawn(name: str, workdir: Path, args: argparse.Namespace) -> Figures:
    flags = ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--micro-batch", str(args.micro_batch)]
    flags += ["--seed", str(args.seed), *(["--count-syncs"] if args.count_syncs else [])]
    return Figures(**spawn_variant(__file__, name, workdir=workdir, flags=flags))


def table(results: dict[str, Figures]) -> list[str]:
    """The markdown table, then each variant's ratios against hf-padded (and LoRA's against kubetune)."""

    def gib(value: int | None) -> str:
        return "n/a" if value is None else f"{value / 2**30:.1f} GiB"

    lines = [
        "| variant | useful tok/s | MFU | peak GPU memory | peak RSS | last loss |",
        "|---|---|---|---|---|---|",
    ]
    for name, f in results.items():
        mfu = "n/a" if f.mfu is None else f"{f.mfu:.1%}"
        lines.append(
            f"| {name} | {f.tokens_per_second:,.0f} | {mfu} | {gib(f.peak_memory_bytes)} | {f.peak_rss_mb:,.0f} MB "
            f"| {f.final_loss:.4f} |"
        )
    lines.append("")
    base = results.get("hf-padded")
    for name, f in results.items():
        if base is not None and name != "hf-padded":
            lines.append(f"{name} / hf-padded: {_ratios(f, base)}")
    for lora_name, full_name in (("kubetune-lora", "kubetune"), ("kubetune-lora-compile", "kubetune-compile")):
        full, lora = results.get(full_name), results.get(lora_name)
        if full is not None and lora is not None:
            lines.append(f"{lora_name} / {full_name}: {_ratios(lora, full)}")
    devices = {f.device for f in results.values()}
    lines.append(f"device: {', '.join(sorted(devices))}; parameters: {next(iter(results.values())).parameters:,}")
    return lines


def _ratios(mine: Figures, theirs: Figures) -> str:
    speed = mine.tokens_per_second / theirs.tokens_per_second if theirs.tokens_per_second else math.nan
    text = f"tok/s {speed:.2f}x"
    if mine.peak_memory_bytes and theirs.peak_memory_bytes:
        text += f", peak GPU memory {mine.peak_memory_bytes / theirs.peak_memory_bytes:.2f}x"
    else:
        text += f", peak RSS {mine.peak_rss_mb / theirs.peak_rss_mb:.2f}x"
    return text


if __name__ == "__main__":
    raise SystemExit(main())
