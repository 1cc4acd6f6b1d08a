"""Small training jobs for the training-loop tests: a config, learnable chat data, a context.

The data is chat turns sampled from the word chain the tiny tokenizers were trained on, so the
loss has something to learn in a few dozen steps (uniformly random words would not).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubetune_trainer.context import DistInfo, RunContext, WorkPaths
from kubetune_trainer.contract import (
    DataSource,
    JobIdentity,
    LoraConfig,
    LrScheduler,
    ModelSource,
    OutputTarget,
    ReportTarget,
    RuntimeSettings,
    TemplateExpectations,
    TrainerConfig,
    TrainingHyperparameters,
)
from kubetune_trainer.data.records import Message, MessagesRecord
from kubetune_trainer.data.tokenization import TokenizedExample, tokenize_example
from kubetune_trainer.report import RecordingReporter
from kubetune_trainer.tiny_model import TinyModel, markov_sentences

TEMPLATE = TemplateExpectations(
    name="tiny",
    family="llama",
    model_types=["llama"],
    architectures=["LlamaForCausalLM"],
    parameters=200_000,
    max_seq_length=256,
    transformers_ceiling="5.99.0",
)


def chat_lines(count: int, *, seed: int) -> list[dict[str, Any]]:
    """`count` conversations: a one-sentence question and a two-sentence answer from the word chain."""
    questions = markov_sentences(count, seed=seed)
    answers = markov_sentences(2 * count, seed=seed + 1000)
    return [
        {
            "messages": [
                {"role": "user", "content": question},
                {"role": "assistant", "content": answers[2 * i] + " " + answers[2 * i + 1]},
            ]
        }
        for i, question in enumerate(questions)
    ]


def write_jsonl(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def tokenized(tokenizer: Any, lines: list[dict[str, Any]], *, max_seq_length: int = 256) -> list[TokenizedExample]:
    records = [MessagesRecord(messages=[Message(**m) for m in line["messages"]]) for line in lines]
    return [
        tokenize_example(record, tokenizer, max_seq_length=max_seq_length, train_on_inputs="auto") for record in records
    ]


def trainer_config(
    model: TinyModel,
    *,
    work_dir: Path,
    training_file: Path,
    validation_file: Path | None = None,
    lora: LoraConfig | None = None,
    report: str = "none",
    **hyperparameters: Any,
) -> TrainerConfig:
    values: dict[str, Any] = {
        "n_epochs": 1,
        "learning_rate": 3e-3,
        "batch_size": 8,
        "lr_scheduler": LrScheduler(),
        "warmup_ratio": 0.1,
        "max_grad_norm": 1.0,
        "weight_decay": 0.01,
        "n_checkpoints": 1,
        "n_evals": 1,
        "train_on_inputs": "auto",
        "max_seq_length": 256,
        "packing": True,
        "seed": 7,
    }
    values.update(hyperparameters)
    return TrainerConfig(
        job=JobIdentity(namespace="ml", name="tiny", uid="uid-1234"),
        model=ModelSource(repo=model.repo_id, template=TEMPLATE),
        data=DataSource(
            training_file=str(training_file), validation_file=str(validation_file) if validation_file else None
        ),
        hyperparameters=TrainingHyperparameters(**values),
        lora=lora,
        output=OutputTarget(uri=str(work_dir / "uploaded"), model_name="tiny-out"),
        runtime=RuntimeSettings(work_dir=str(work_dir)),
        report=ReportTarget(kind=report),  # type: ignore[arg-type]
        termination_log_path=str(work_dir / "termination-log"),
    )


def training_context(
    config: TrainerConfig,
    *,
    model: TinyModel,
    tokenizer: Any,
    train: list[TokenizedExample],
    validation: list[TokenizedExample] | None = None,
) -> tuple[RunContext, RecordingReporter]:
    """A context as DataDownload leaves it: snapshot path, tokenizer and tokenized examples."""
    reporter = RecordingReporter()
    ctx = RunContext(
        config=config,
        environ={},
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
        reporter=reporter,
        dist=DistInfo(),
        paths=WorkPaths(Path(config.runtime.work_dir)),
    )
    ctx.model_path = model.snapshot_path
    ctx.tokenizer = tokenizer
    ctx.train_examples = train
    ctx.validation_examples = validation or []
    ctx.max_seq_length = config.hyperparameters.max_seq_length
    return ctx, reporter
