"""kubetune's Initialization and Training stages, run as a job runs them, on a model and examples a bench prepared.

The throughput benches measure the trainer through this one function, so they measure the same
thing: a TrainerConfig with one epoch, no evaluation and no checkpoints but the last, packing on, and
a callback after every optimizer step (the bench's clock).
"""

# Imports sit inside the function on purpose: only a variant's own process loads the ML stack.
# ruff: noqa: PLC0415

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class StagesRun:
    ctx: Any
    """The RunContext the stages ran with."""
    downloaded: Any
    """DataDownload's hand-off as the stages were given it: the tokenizer, the examples, the sequence length."""
    initialized: Any
    """Initialization's hand-off: the model (trained now) and its training setup."""
    train_losses: list[float]
    """The training loss reported at every step, in order."""

    @property
    def config(self) -> Any:
        return self.ctx.config

    @property
    def max_seq_length(self) -> int:
        return int(self.downloaded.max_seq_length)

    @property
    def tokenizer(self) -> Any:
        return self.downloaded.tokenizer


def run_stages(
    *,
    model_dir: Path,
    work_dir: Path,
    examples: list[Any],
    max_seq_length: int,
    batch_size: int,
    learning_rate: float,
    warmup_ratio: float,
    seed: int,
    on_step: Callable[[], None],
    lora: bool = False,
    compile_model: bool = False,
) -> StagesRun:
    """Train `examples` (tokenized) from `model_dir` with kubetune's stages; `on_step` runs after every step.

    LoRA, when asked, is the catalog's default (r 64, alpha 128, all-linear, not merged).
    """
    import json

    from transformers import AutoTokenizer

    from kubetune_trainer.context import DistInfo, RunContext, WorkPaths
    from kubetune_trainer.contract import (
        DataSource,
        JobIdentity,
        LoraConfig,
        LrScheduler,
        ModelSource,
        OutputTarget,
        Progress,
        ReportTarget,
        RuntimeSettings,
        TemplateExpectations,
        TrainerConfig,
        TrainingHyperparameters,
    )
    from kubetune_trainer.handoffs import DownloadResult, FetchedFile, ModelSnapshot, SupervisedSplits
    from kubetune_trainer.model_rules import evaluate
    from kubetune_trainer.report import RecordingReporter
    from kubetune_trainer.stages import initialize
    from kubetune_trainer.stages import train as train_stage

    config = TrainerConfig(
        job=JobIdentity(namespace="bench", name="bench", uid="bench"),
        model=ModelSource(
            repo="bench/llama",
            template=TemplateExpectations(
                name="bench",
                family="llama",
                model_types=["llama"],
                architectures=["LlamaForCausalLM"],
                parameters=1,  # only the Download stage compares it with the model, and it does not run here
                max_seq_length=max_seq_length,
                transformers_ceiling="5.99.0",
            ),
        ),
        # The examples come tokenized (DataDownload's hand-off): the stages run here never read the file.
        data=DataSource(training_file=str(work_dir / "unused.jsonl")),
        hyperparameters=TrainingHyperparameters(
            n_epochs=1,
            learning_rate=learning_rate,
            batch_size=batch_size,
            lr_scheduler=LrScheduler(),
            warmup_ratio=warmup_ratio,
            max_grad_norm=1.0,
            weight_decay=0.01,
            n_checkpoints=1,
            n_evals=0,
            train_on_inputs="auto",
            max_seq_length=max_seq_length,
            packing=True,
            seed=seed,
        ),
        lora=LoraConfig(r=64, alpha=128, dropout=0.0, target_modules=["all-linear"], merge=False) if lora else None,
        output=OutputTarget(uri=str(work_dir / "uploaded"), model_name="bench"),
        runtime=RuntimeSettings(work_dir=str(work_dir), compile=compile_model),
        report=ReportTarget(kind="none"),
    )

    class TimedReporter(RecordingReporter):
        def progress(self, progress: Progress) -> None:
            if progress.loss is not None and progress.eval_loss is None:
                on_step()
            super().progress(progress)

    reporter = TimedReporter()
    ctx = RunContext(
        config=config,
        environ={},
        clock=lambda: datetime.now(UTC),
        reporter=reporter,
        dist=DistInfo(),
        paths=WorkPaths(work_dir),
    )
    # DataDownload's hand-off as the stage builds it: the model's facts from its config.json, its own tokenizer.
    revision = "0" * 40  # a folder written by the bench: no commit
    model_config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    files = [path.name for path in model_dir.iterdir()]
    facts = evaluate(model_config, files, repo=config.model.repo, revision_sha=revision, template=None).facts_or_raise()
    downloaded = DownloadResult(
        model=ModelSnapshot(path=model_dir, revision_sha=revision, facts=facts),
        training_file=FetchedFile(path=Path(config.data.training_file), sha256="0" * 64),
        validation_file=None,
        tokenizer=AutoTokenizer.from_pretrained(str(model_dir)),
        default_chat_template=False,
        max_seq_length=max_seq_length,
        examples=SupervisedSplits(train=tuple(examples), validation=()),
        training_tokens=sum(len(example) for example in examples),
    )
    initialized = initialize.run(ctx, downloaded)
    train_stage.run(ctx, downloaded, initialized)
    losses = [float(p.loss) for p in reporter.progresses if p.loss is not None and p.eval_loss is None]
    return StagesRun(ctx, downloaded, initialized, losses)
