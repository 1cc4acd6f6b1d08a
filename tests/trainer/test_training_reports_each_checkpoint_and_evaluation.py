"""Rank 0 reports each checkpoint it completes and each evaluation, carried by every later report.

The operator lists status.checkpoints and status.evalHistory from `progress.recentCheckpoints` and
`progress.recentEvals`; since reports are rate-limited, every report carries the newest of both.
"""

from __future__ import annotations

from pathlib import Path

from kubetune_trainer.stages import initialize, train
from kubetune_trainer.tiny_model import TinyModel

from .training_jobs import chat_lines, chat_training_context


def test_every_checkpoint_and_evaluation_reaches_the_progress_reports(tiny_llama: TinyModel, tmp_path: Path) -> None:
    ctx, reporter, downloaded = chat_training_context(
        tiny_llama,
        work_dir=tmp_path,
        lines=chat_lines(16, seed=3),
        held_out=chat_lines(4, seed=9),
        batch_size=4,
        n_checkpoints=2,
        n_evals=2,
    )

    trained = train.run(ctx, downloaded, initialize.run(ctx, downloaded))

    reports = reporter.progresses
    total = reports[-1].total_steps
    assert total is not None
    assert total >= 2
    saved = [c.step for c in reports[-1].recent_checkpoints]
    evaluated = [e.step for e in reports[-1].recent_evals]
    assert len(saved) == 2, saved
    assert saved[-1] == total
    assert evaluated[0] == 0, "the evaluation before training"
    assert len(evaluated) == 3
    assert evaluated[-1] == total

    final = reports[-1].recent_checkpoints[-1]
    step_report = next(p for p in reports if p.step == total and p.loss is not None)
    assert (final.epoch, final.train_loss) == (1.0, step_report.loss)
    assert final.eval_loss == reports[-1].recent_evals[-1].eval_loss, (
        "the last step was evaluated before its checkpoint"
    )
    # A checkpoint, once reported, is carried by every later report (a dropped report loses nothing).
    first = next(i for i, p in enumerate(reports) if p.recent_checkpoints)
    assert all(p.recent_checkpoints[0].step == saved[0] for p in reports[first:])
    # The eval losses reported are the run's own.
    assert trained.metrics["eval_loss"] == reports[-1].recent_evals[-1].eval_loss
