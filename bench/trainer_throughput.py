"""Trainer throughput: kubetune's loop against the Hugging Face Trainer, on the same data and model.

    .venv/bin/python bench/trainer_throughput.py [--steps 60] [--batch-size 8] [--threads 2] [--rounds 1]

One small model of realistic proportions (Llama, hidden 256, 4 layers, vocab 4096, random
weights) trains on length-varied chat data (30 to 500 tokens, loss on the assistant turns) with
the same effective batch, steps, schedule and seed, three ways:

  (a) hf-padded    the HF Trainer with dynamic padding (DataCollatorForSeq2Seq)
  (b) hf-flatten   the HF Trainer with its padding-free collator (DataCollatorWithFlattening)
  (c) kubetune     kubetune's Initialization and Training stages, as a job runs them

plus, for the accelerate-or-not decision in docs/training.md, (d) `kubetune-accelerate`: the
same steps through `accelerate.Accelerator` (prepare, backward, no_sync).

Each variant runs in a subprocess of its own, so its peak RSS is its own. Throughput counts
useful (non-pad) tokens per second over the steps after the first five (start-up excluded, so
--steps is at least 6), per wall second and per CPU second: on a shared machine the wall figure
moves with the neighbours' load, the CPU figure much less. With --rounds N every variant runs N
times, interleaved, and the best round counts. The final loss is the eval loss on the same
held-out examples, computed by the same code for every variant.
"""

# Imports sit inside the functions on purpose: the parent imports no ML stack, and each variant's
# process loads only what that variant uses, so its peak RSS is its own.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubetune_stages import run_stages
from synthetic import save_random_llama, sentence_chats, write_jsonl
from variant_process import spawn_variant
from warm_up import WARM_STEPS, too_few_steps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "trainer_image"))

VARIANTS = ("hf-padded", "hf-flatten", "kubetune", "kubetune-accelerate")
MAX_SEQ_LENGTH = 512


@dataclass
class Figures:
    variant: str
    steps: int
    useful_tokens: int
    padded_cells: int
    wall_seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    train_losses: list[float] = field(default_factory=list)
    eval_loss: float = math.nan
    paths: str = ""
    """The attention and loss paths the variant trained with."""

    @property
    def tokens_per_second(self) -> float:
        return self.useful_tokens / self.wall_seconds

    @property
    def tokens_per_cpu_second(self) -> float:
        return self.useful_tokens / self.cpu_seconds

    @property
    def padding_waste(self) -> float:
        return 1.0 - self.useful_tokens / self.padded_cells if self.padded_cells else 0.0


# --------------------------------------------------------------------------- the job, built once


def build_job(workdir: Path, *, steps: int, batch_size: int, eval_examples: int, seed: int) -> None:
    """Write the model, tokenizer, chat data and the tokenized examples every variant trains on."""
    from transformers import AutoTokenizer

    from kubetune_trainer.data.records import Message, MessagesRecord
    from kubetune_trainer.data.tokenization import tokenize_example
    from kubetune_trainer.tiny_model import markov_sentences

    model_dir = workdir / "model"
    save_random_llama(
        model_dir,
        hidden=256,
        intermediate=688,
        layers=4,
        heads=4,
        kv_heads=2,
        tokenizer_vocab=4096,
        tie=False,
        seed=seed,
    )
    tokenizer: Any = AutoTokenizer.from_pretrained(str(model_dir))
    rng = random.Random(seed)
    sentences = markov_sentences(20_000, seed=seed + 1)

    def tokenized(lines: list[dict[str, Any]]) -> list[dict[str, list[int]]]:
        out = []
        for line in lines:
            record = MessagesRecord(messages=[Message(**m) for m in line["messages"]])
            example = tokenize_example(record, tokenizer, max_seq_length=MAX_SEQ_LENGTH, train_on_inputs="auto")
            out.append({"input_ids": example.input_ids, "labels": example.labels})
        return out

    # Lengths spread uniformly over 30-500 tokens; the held-out examples follow the training ones.
    train_lines = sentence_chats(steps * batch_size, rng=rng, sentences=sentences)
    eval_lines = sentence_chats(eval_examples, rng=rng, sentences=sentences)
    write_jsonl(workdir / "train.jsonl", train_lines)
    (workdir / "examples.json").write_text(json.dumps({"train": tokenized(train_lines), "eval": tokenized(eval_lines)}))


# --------------------------------------------------------------------------- one variant, in its own process


def run_variant(name: str, workdir: Path, *, steps: int, batch_size: int, threads: int, seed: int) -> Figures:
    import torch

    torch.set_num_threads(threads)
    from kubetune_trainer.data.tokenization import TokenizedExample

    data = json.loads((workdir / "examples.json").read_text())
    train = [TokenizedExample(e["input_ids"], e["labels"]) for e in data["train"]]
    held_out = [TokenizedExample(e["input_ids"], e["labels"]) for e in data["eval"]]
    runner: Callable[..., tuple[Any, Figures]] = {
        "hf-padded": _hf_trainer,
        "hf-flatten": _hf_trainer,
        "kubetune": _kubetune,
        "kubetune-accelerate": _accelerate,
    }[name]
    model, figures = runner(name, workdir, train, steps=steps, batch_size=batch_size, seed=seed)
    figures.eval_loss = _eval_loss(model, held_out)
    figures.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


class _StepClock:
    """Wall and CPU time at the end of every step; tokens counted over the steps after the warm-up."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, float]] = []

    def tick(self) -> None:
        self.marks.append((time.perf_counter(), time.process_time()))

    def window(self) -> tuple[float, float]:
        (wall0, cpu0), (wall1, cpu1) = self.marks[WARM_STEPS - 1], self.marks[-1]
        return wall1 - wall0, cpu1 - cpu0


def _hyper(steps: int) -> dict[str, Any]:
    return {"learning_rate": 1e-3, "warmup_steps": math.ceil(0.1 * steps), "weight_decay": 0.01, "max_grad_norm": 1.0}


def _hf_trainer(
    name: str, workdir: Path, train: list[Any], *, steps: int, batch_size: int, seed: int
) -> tuple[Any, Figures]:
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        DataCollatorWithFlattening,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(str(workdir / "model"))
    model = AutoModelForCausalLM.from_pretrained(str(workdir / "model"))
    inner: Any = (
        DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
        if name == "hf-padded"
        else DataCollatorWithFlattening()  # type: ignore[no-untyped-call]
    )
    per_step: list[tuple[int, int]] = []  # (useful tokens, cells) of each batch, in order

    def collate(features: list[dict[str, Any]]) -> Any:
        batch = inner([{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features])
        useful = int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
        per_step.append((useful, batch["input_ids"].numel()))
        return batch

    clock = _StepClock()

    class Tick(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            clock.tick()

    hyper = _hyper(steps)
    arguments = TrainingArguments(
        output_dir=str(workdir / f"out-{name}"),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=1,
        max_steps=steps,
        lr_scheduler_type="cosine",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=seed,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
        **hyper,
    )
    dataset = [{"input_ids": e.input_ids, "labels": e.labels} for e in train]
    trainer = Trainer(model=model, args=arguments, train_dataset=dataset, data_collator=collate, callbacks=[Tick()])
    trainer.train()
    wall, cpu = clock.window()
    counted = per_step[WARM_STEPS:steps]
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return model, Figures(
        variant=name,
        steps=steps,
        useful_tokens=sum(u for u, _ in counted),
        padded_cells=sum(c for _, c in counted),
        wall_seconds=wall,
        cpu_seconds=cpu,
        peak_rss_mb=0.0,
        train_losses=losses,
    )


def _kubetune(
    name: str, workdir: Path, train: list[Any], *, steps: int, batch_size: int, seed: int
) -> tuple[Any, Figures]:
    clock = _StepClock()
    done = run_stages(
        model_dir=workdir / "model",
        work_dir=workdir / f"work-{name}",
        examples=train,
        max_seq_length=MAX_SEQ_LENGTH,
        batch_size=batch_size,
        learning_rate=_hyper(steps)["learning_rate"],
        warmup_ratio=0.1,
        seed=seed,
        on_step=clock.tick,
    )
    useful, cells = _kubetune_step_tokens(done, train, steps=steps)
    wall, cpu = clock.window()
    return done.initialized.model, Figures(
        variant=name,
        steps=steps,
        useful_tokens=useful,
        padded_cells=cells,
        wall_seconds=wall,
        cpu_seconds=cpu,
        peak_rss_mb=0.0,
        train_losses=done.train_losses,
        paths=_kubetune_paths(done.initialized.setup),
    )


def _kubetune_paths(setup: Any) -> str:
    """Which attention kernel and loss the run used, as the trainer logged them."""
    from kubetune_trainer.training import loss as loss_module

    attention = setup.attention.message() if hasattr(setup, "attention") else "attention: transformers sdpa"
    # training.loss names its path in LOSS_PATH where it has one; before that it was the plain fp32 loss.
    loss_path = getattr(loss_module, "LOSS_PATH", "label positions only (logits_to_keep), fp32 logits")
    return f"{attention}; loss: {loss_path}"


def _kubetune_plan(ctx: Any) -> Any:
    from kubetune_trainer.training.steps import BatchingPlan

    hyper = ctx.config.hyperparameters
    return BatchingPlan(
        examples_per_step=hyper.batch_size,
        token_budget=ctx.max_seq_length,  # the trainer's CPU rule (training/memory_plan.py)
        packing=hyper.packing,
        pad_token_id=ctx.tokenizer.pad_token_id,
        seed=hyper.seed,
    )


def _kubetune_step_tokens(ctx: Any, train: list[Any], *, steps: int) -> tuple[int, int]:
    """Useful tokens and tensor cells of the steps counted, from the same (deterministic) plan."""
    from kubetune_trainer.training.steps import EpochSteps

    useful = cells = 0
    for index, step in enumerate(EpochSteps(train, plan=_kubetune_plan(ctx), epoch=0)):
        if WARM_STEPS <= index < steps:
            useful += sum(b.tokens for b in step.micro_batches)
            cells += sum(b.input_ids.numel() for b in step.micro_batches)
    return useful, cells


def _accelerate(
    name: str, workdir: Path, train: list[Any], *, steps: int, batch_size: int, seed: int
) -> tuple[Any, Figures]:
    """kubetune's steps and loss, with device placement, wrapping and backward through accelerate."""
    import torch
    from accelerate import Accelerator  # type: ignore[import-untyped]
    from transformers import AutoTokenizer

    from kubetune_trainer.contract import LrScheduler
    from kubetune_trainer.training.loss import summed_label_loss
    from kubetune_trainer.training.optim import build_optimizer
    from kubetune_trainer.training.schedule import build_scheduler
    from kubetune_trainer.training.seeding import seed_everything
    from kubetune_trainer.training.setup import load_model
    from kubetune_trainer.training.steps import EpochSteps

    class _Ctx:
        pass

    ctx: Any = _Ctx()
    ctx.config = argparse.Namespace(hyperparameters=argparse.Namespace(batch_size=batch_size, packing=True, seed=seed))
    ctx.max_seq_length = MAX_SEQ_LENGTH
    ctx.tokenizer = AutoTokenizer.from_pretrained(str(workdir / "model"))
    seed_everything(seed)
    hyper = _hyper(steps)
    accelerator = Accelerator(cpu=True)
    model = load_model(workdir / "model", dtype=torch.float32)
    optimizer = build_optimizer(model, learning_rate=hyper["learning_rate"], weight_decay=hyper["weight_decay"])
    scheduler = build_scheduler(optimizer, schedule=LrScheduler(), total_steps=steps, warmup_ratio=0.1)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    model.train()
    clock = _StepClock()
    losses: list[float] = []
    for step in EpochSteps(train, plan=_kubetune_plan(ctx), epoch=0):
        total = torch.zeros(())
        last = len(step.micro_batches) - 1
        for index, micro in enumerate(step.micro_batches):
            batch = micro.to(accelerator.device)
            context = accelerator.no_sync(model) if index < last else _NoContext()
            with context:
                loss = summed_label_loss(model, batch) / step.label_tokens
                accelerator.backward(loss)
            total += loss.detach()
        accelerator.clip_grad_norm_(model.parameters(), hyper["max_grad_norm"])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(total))
        clock.tick()
    useful, cells = _kubetune_step_tokens(ctx, train, steps=steps)
    wall, cpu = clock.window()
    return accelerator.unwrap_model(model), Figures(
        variant=name,
        steps=steps,
        useful_tokens=useful,
        padded_cells=cells,
        wall_seconds=wall,
        cpu_seconds=cpu,
        peak_rss_mb=0.0,
        train_losses=losses,
    )


class _NoContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _eval_loss(model: Any, held_out: list[Any]) -> float:
    """Token-weighted loss on the held-out examples, by kubetune's evaluation for every variant."""
    import torch

    from kubetune_trainer.contract import Precision
    from kubetune_trainer.training.evaluation import evaluate
    from kubetune_trainer.training.precision import plan_precision
    from kubetune_trainer.training.steps import BatchingPlan, validation_batches

    model.config.use_cache = False
    plan = BatchingPlan(examples_per_step=1, token_budget=MAX_SEQ_LENGTH, packing=True, pad_token_id=0, seed=0)
    cpu = torch.device("cpu")
    return evaluate(
        model,
        validation_batches(held_out, plan=plan),
        precision=plan_precision(Precision.FP32, device=cpu),
        device=cpu,
    )


# --------------------------------------------------------------------------- the parent: run, compare, print


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8, help="effective batch: examples per optimizer step")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per variant")
    parser.add_argument("--rounds", type=int, default=1, help="run every variant this many times, interleaved")
    parser.add_argument("--eval-examples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--workdir", type=Path, help="keep the job here (default: a temp dir)")
    parser.add_argument("--run-variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    refusal = too_few_steps(__file__, args.steps)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 2

    if args.run_variant:
        figures = run_variant(
            args.run_variant,
            args.workdir,
            steps=args.steps,
            batch_size=args.batch_size,
            threads=args.threads,
            seed=args.seed,
        )
        print("FIGURES " + json.dumps(asdict(figures)))
        return 0

    with tempfile.TemporaryDirectory(prefix="kubetune-bench-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        build_job(
            workdir, steps=args.steps, batch_size=args.batch_size, eval_examples=args.eval_examples, seed=args.seed
        )
        lengths = [len(e["input_ids"]) for e in json.loads((workdir / "examples.json").read_text())["train"]]
        print(
            f"job: {len(lengths)} examples, {min(lengths)}-{max(lengths)} tokens "
            f"(mean {statistics.mean(lengths):.0f}), "
            f"{args.steps} steps of {args.batch_size} examples, {args.threads} threads, "
            f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        runs: dict[str, list[Figures]] = {}
        for round_index in range(args.rounds):
            for name in args.variants.split(","):
                figures = _spawn(name, workdir, args)
                runs.setdefault(name, []).append(figures)
                print(
                    f"  round {round_index + 1} {name:20s} {figures.tokens_per_second:7.0f} tok/s "
                    f"{figures.tokens_per_cpu_second:7.0f} tok/cpu-s  rss {figures.peak_rss_mb:5.0f} MB  "
                    f"eval loss {figures.eval_loss:.4f}  (load {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
        _print_table({name: max(found, key=lambda f: f.tokens_per_cpu_second) for name, found in runs.items()})
        print(f"total {time.perf_counter() - started:.0f} s")
    return 0


def _spawn(name: str, workdir: Path, args: argparse.Namespace) -> Figures:
    flags = ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    return Figures(**spawn_variant(__file__, name, workdir=workdir, flags=[*flags, "--seed", str(args.seed)]))


def _print_table(best: dict[str, Figures]) -> None:
    print()
    print(
        "| variant | useful tok/s (wall) | useful tok/CPU-s | padding waste | peak RSS "
        "| train loss (last 10) | eval loss |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, f in best.items():
        tail = statistics.mean(f.train_losses[-10:]) if f.train_losses else math.nan
        print(
            f"| {name} | {f.tokens_per_second:,.0f} | {f.tokens_per_cpu_second:,.0f} | {f.padding_waste:.1%} | "
            f"{f.peak_rss_mb:,.0f} MB | {tail:.4f} | {f.eval_loss:.4f} |"
        )
    if {"kubetune", "hf-padded", "hf-flatten"} <= best.keys():
        c, a, b = best["kubetune"], best["hf-padded"], best["hf-flatten"]
        print()
        for label, mine, theirs, goal in (("(c)/(a)", c, a, 1.5), ("(c)/(b)", c, b, 1.2)):
            wall = mine.tokens_per_second / theirs.tokens_per_second
            cpu = mine.tokens_per_cpu_second / theirs.tokens_per_cpu_second
            print(f"{label}: {wall:.2f} (wall), {cpu:.2f} (CPU time); goal >= {goal}")
        print(f"peak RSS (c)/(a): {c.peak_rss_mb / a.peak_rss_mb:.2f}; goal <= 1.1")
        spread = max(abs(f.eval_loss - a.eval_loss) / a.eval_loss for f in (b, c))
        print(f"eval loss spread against (a): {spread:.1%}; goal within 2%")
    for name, f in best.items():
        if f.paths:
            print(f"{name} paths: {f.paths}")
    if {"kubetune", "kubetune-accelerate"} <= best.keys():
        c, d = best["kubetune"], best["kubetune-accelerate"]
        print(
            f"plain loop / accelerate: {c.tokens_per_second / d.tokens_per_second:.3f} (wall), "
            f"{c.tokens_per_cpu_second / d.tokens_per_cpu_second:.3f} (CPU time)"
        )


if __name__ == "__main__":
    raise SystemExit(main())
