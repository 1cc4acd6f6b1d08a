"""Small training jobs for the training-loop tests: a config, learnable chat data, a context, DataDownload's hand-off.

The data is chat turns sampled from the word chain the tiny tokenizers were trained on, so the
loss has something to learn in a few dozen steps (uniformly random words would not).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

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
from kubetune_trainer.handoffs import DownloadResult, FetchedFile, ModelSnapshot, SupervisedSplits, TrainingOutcome
from kubetune_trainer.model_card import render_model_card
from kubetune_trainer.model_rules import evaluate
from kubetune_trainer.report import RecordingReporter
from kubetune_trainer.tiny_model import TinyModel, markov_sentences
from kubetune_trainer.training.precision import plan_precision
from kubetune_trainer.training.setup import TrainingSetup

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
    environ: dict[str, str] | None = None,
    dist: DistInfo | None = None,
) -> tuple[RunContext, RecordingReporter, DownloadResult]:
    """A run's context, and DataDownload's hand-off for it: the snapshot, the tokenizer and the tokenized examples.

    `tokenizer` None: the tiny model's own, loaded from its snapshot.
    """
    reporter = RecordingReporter()
    ctx = RunContext(
        config=config,
        environ=environ or {},
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
        reporter=reporter,
        dist=dist or DistInfo(),
        paths=WorkPaths(Path(config.runtime.work_dir)),
    )
    return ctx, reporter, downloaded(config, model=model, tokenizer=tokenizer, train=train, validation=validation)


def chat_training_context(
    model: TinyModel,
    *,
    work_dir: Path,
    lines: list[dict[str, Any]],
    held_out: list[dict[str, Any]],
    lora: LoraConfig | None = None,
    **hyperparameters: Any,
) -> tuple[RunContext, RecordingReporter, DownloadResult]:
    """`training_context` for a `trainer_config` job that trains on `lines` and evaluates on `held_out`.

    Both are written as the job's files under `work_dir` and tokenized with the model's own tokenizer.
    """
    tokenizer = AutoTokenizer.from_pretrained(str(model.snapshot_path))
    config = trainer_config(
        model,
        work_dir=work_dir,
        training_file=write_jsonl(work_dir / "train.jsonl", lines),
        validation_file=write_jsonl(work_dir / "validation.jsonl", held_out),
        lora=lora,
        **hyperparameters,
    )
    return training_context(
        config,
        model=model,
        tokenizer=tokenizer,
        train=tokenized(tokenizer, lines),
        validation=tokenized(tokenizer, held_out),
    )


def downloaded(
    config: TrainerConfig,
    *,
    model: TinyModel,
    tokenizer: Any = None,
    train: list[TokenizedExample] | None = None,
    validation: list[TokenizedExample] | None = None,
    training_sha256: str = "ab" * 32,
) -> DownloadResult:
    """DataDownload's hand-off as the stage builds it for `model`, with the given tokenized examples."""
    fetched = WorkPaths(Path(config.runtime.work_dir)).data  # where DataDownload puts the files
    config_json = json.loads((model.snapshot_path / "config.json").read_text(encoding="utf-8"))
    check = evaluate(
        config_json,
        [path.name for path in model.snapshot_path.iterdir()],
        repo=model.repo_id,
        revision_sha=model.revision_sha,
        template=None,
    )
    return DownloadResult(
        model=ModelSnapshot(path=model.snapshot_path, revision_sha=model.revision_sha, facts=check.facts_or_raise()),
        training_file=FetchedFile(path=fetched / "training.jsonl", sha256=training_sha256),
        validation_file=(
            FetchedFile(path=fetched / "validation.jsonl", sha256="cd" * 32)
            if config.data.validation_file is not None
            else None
        ),
        tokenizer=tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(str(model.snapshot_path)),
        default_chat_template=False,
        max_seq_length=config.hyperparameters.max_seq_length,
        examples=SupervisedSplits(train=tuple(train or ()), validation=tuple(validation or ())),
        training_tokens=sum(len(example) for example in train or ()),
    )


def model_card(config: TrainerConfig, *, model: TinyModel, resumed_from_step: int | None = None) -> str:
    """The model card Saving writes for a run of `config` on `model` (fp32 on the CPU)."""
    ctx, _, handed_on = training_context(config, model=model, tokenizer=None, train=[])
    cpu = torch.device("cpu")
    return render_model_card(
        ctx,
        downloaded=handed_on,
        setup=TrainingSetup(device=cpu, precision=plan_precision(config.runtime.precision, device=cpu), lora=False),
        trained=TrainingOutcome(total_steps=0, metrics={}, resumed_from_step=resumed_from_step),
        metrics={},
        layout="model.safetensors",
    )
