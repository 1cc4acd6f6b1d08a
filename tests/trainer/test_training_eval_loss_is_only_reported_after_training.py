"""With nEvals 0 only the evaluation before training runs; the model card must not present it as the final eval loss."""

from __future__ import annotations

from pathlib import Path

from kubetune_trainer.stages import initialize, train
from kubetune_trainer.tiny_model import TinyModel

from .training_jobs import chat_lines, chat_training_context


def test_no_evaluation_during_training_means_no_eval_loss_metric(tiny_llama: TinyModel, tmp_path: Path) -> None:
    ctx, _, downloaded = chat_training_context(
        tiny_llama, work_dir=tmp_path, lines=chat_lines(8, seed=3), held_out=chat_lines(4, seed=9), n_evals=0
    )

    trained = train.run(ctx, downloaded, initialize.run(ctx, downloaded))

    assert trained.metrics["eval_loss_before"] > 0
    assert "eval_loss" not in trained.metrics
