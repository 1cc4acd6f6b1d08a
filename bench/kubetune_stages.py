"""kubetune's Initialization and Training stages, run as a job runs them, on a model and examples a bench prepared.

The throughput benches measure the trainer through this one function, so they measure the same
thing: a TrainerConfig with one epoch, no evaluation and no checkpoints but the last, packing on, and
a callback after every optimizer step (the bench's clock). DataDownload's hand-off is built by the
tests' own helper (`tests/trainer/training_jobs.downloaded`), so the bench gives the stages what the
tests give them.
"""

# Imports sit inside the function on purpose: only a variant's own process loads the ML stack.
# ruff: noqa: PLC0415

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # the `tests` package (bench/operator_scale.py imports from it likewise)


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
    from tests.trainer.training_jobs import downloaded as download_handoff

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
    from kubetune_trainer.report import RecordingReporter
    from kubetune_trainer.stages import initialize
    from kubetune_trainer.stages import train as train_stage
    from kubetune_trainer.tiny_model import TinyModel

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
    # DataDownload's hand-off for the bench's folder: the model's facts from its config.json, its own tokenizer.
    model = TinyModel(repo_id=config.model.repo, revision_sha="0" * 40, snapshot_path=model_dir)  # no commit
    downloaded = download_handoff(config, model=model, train=examples)
    initialized = initialize.run(ctx, downloaded)
    train_stage.run(ctx, downloaded, initialized)
    losses = [float(p.loss) for p in reporter.progresses if p.loss is not None and p.eval_loss is None]
    return StagesRun(ctx, downloaded, initialized, losses)
