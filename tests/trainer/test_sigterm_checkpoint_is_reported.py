"""A checkpoint written on SIGTERM is reported like a scheduled one, so a cancelled or preempted job lists it.

The operator lists status.checkpoints from the progress reports' `recentCheckpoints` (rank 0 may
patch only progress); a cancel deletes the attempt's Job, and a pod whose Job is gone is no longer
read for its termination message, so the report is the only way the SIGTERM checkpoint is told.
"""

from __future__ import annotations

import dataclasses
import signal
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from kubetune_trainer.contract import Progress
from kubetune_trainer.errors import InfrastructureFailure
from kubetune_trainer.preemption import Preemption
from kubetune_trainer.report import RecordingReporter
from kubetune_trainer.stages import initialize, train
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.checkpoint import COMPLETE_FILE, checkpoint_dir

from .training_jobs import chat_lines, tokenized, trainer_config, training_context, write_jsonl

SIGNAL_AT_STEP = 2


class SignalAfterStep(RecordingReporter):
    """Records reports; sends itself SIGTERM's notice once step `SIGNAL_AT_STEP` is reported."""

    def __init__(self, preemption: Preemption) -> None:
        super().__init__()
        self.preemption = preemption

    def progress(self, progress: Progress) -> None:
        super().progress(progress)
        if progress.step == SIGNAL_AT_STEP and not self.preemption.requested:
            self.preemption.handle(signal.SIGTERM, None)  # inside the loop: only recorded


def test_the_sigterm_checkpoint_reaches_the_progress_reports(tiny_llama: TinyModel, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama.snapshot_path))
    lines = chat_lines(32, seed=3)
    config = trainer_config(
        tiny_llama,
        work_dir=tmp_path,
        training_file=write_jsonl(tmp_path / "t.jsonl", lines),
        batch_size=4,
        n_checkpoints=1,  # scheduled: the last step only
        n_evals=0,
    )
    checkpoints = tmp_path / "checkpoints"
    runtime = config.runtime.model_copy(update={"checkpoint_uri": f"file://{checkpoints}"})
    config = config.model_copy(update={"runtime": runtime})
    ctx, _, downloaded = training_context(
        config, model=tiny_llama, tokenizer=tokenizer, train=tokenized(tokenizer, lines)
    )
    preemption = Preemption(budget_seconds=300.0)
    reporter = SignalAfterStep(preemption)
    ctx = dataclasses.replace(ctx, reporter=reporter, preemption=preemption)

    initialized = initialize.run(ctx, downloaded)
    with pytest.raises(InfrastructureFailure, match="SIGTERM"):
        train.run(ctx, downloaded, initialized)

    saved_step = SIGNAL_AT_STEP + 1  # the signal is acted on at the next step's boundary
    assert (checkpoint_dir(checkpoints / "tiny" / "uid-1234", saved_step) / COMPLETE_FILE).exists()
    last = reporter.progresses[-1]
    assert [c.step for c in last.recent_checkpoints] == [saved_step], "the SIGTERM checkpoint is reported"
    assert last.step == saved_step
