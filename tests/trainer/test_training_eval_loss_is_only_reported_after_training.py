"""With nEvals 0 only the evaluation before training runs; the model card must not present it as the final eval loss."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from kubetune_trainer.stages import initialize, train
from kubetune_trainer.tiny_model import TinyModel

from .training_jobs import chat_lines, tokenized, trainer_config, training_context, write_jsonl


def test_no_evaluation_during_training_means_no_eval_loss_metric(tiny_llama: TinyModel, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama.snapshot_path))
    lines, held_out = chat_lines(8, seed=3), chat_lines(4, seed=9)
    config = trainer_config(
        tiny_llama,
        work_dir=tmp_path,
        training_file=write_jsonl(tmp_path / "t.jsonl", lines),
        validation_file=write_jsonl(tmp_path / "v.jsonl", held_out),
        n_evals=0,
    )
    ctx, _, downloaded = training_context(
        config,
        model=tiny_llama,
        tokenizer=tokenizer,
        train=tokenized(tokenizer, lines),
        validation=tokenized(tokenizer, held_out),
    )

    trained = train.run(ctx, downloaded, initialize.run(ctx, downloaded))

    assert trained.metrics["eval_loss_before"] > 0
    assert "eval_loss" not in trained.metrics
