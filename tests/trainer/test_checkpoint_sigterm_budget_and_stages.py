"""SIGTERM outside a training step, and a SIGTERM whose budget runs out before the step ends.

- In a stage other than the training loop (here DataDownload) there is nothing to save: the stage
  fails at once, Internal, Preempted, retryable.
- In a step longer than `runtime.checkpointGraceSeconds` the loop never reaches a boundary in
  time: the deadline timer still ends the run with a Result (Preempted, the previous checkpoint's
  step) well before Kubernetes' SIGKILL would.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from kubetune_trainer.context import RunContext
from kubetune_trainer.contract import Outcome, Stage
from kubetune_trainer.pipeline import run_pipeline
from kubetune_trainer.preemption import Preemption
from kubetune_trainer.report import RecordingReporter
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.checkpoint import COMPLETE_FILE, checkpoint_dir

from .local_runs import trainer_config
from .preemption_runs import finish, result_of, resumable_job, start_trainer, subprocess_environ, wait_for_line
from .stand_in_stages import stand_in_stages

STALL_SECONDS = 600.0


def test_sigterm_outside_training_fails_the_stage_at_once(tmp_path: Path) -> None:
    config = trainer_config(tmp_path)
    preemption = Preemption(budget_seconds=25.0)
    restore = preemption.install()
    started = time.monotonic()

    def download(ctx: RunContext) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(600)  # a long download, cut short by the handler

    try:
        result = run_pipeline(
            config,
            environ={},
            clock=lambda: datetime.now(UTC),
            reporter=RecordingReporter(),
            stages=stand_in_stages(download=download),
            preemption=preemption,
        )
    finally:
        restore()

    assert time.monotonic() - started < 300  # cut short: the download alone would take 600 s
    assert result.error is not None
    assert (result.error.error_class.value, result.error.reason, result.error.retryable) == (
        "Internal",
        "Preempted",
        True,
    )
    assert result.error.stage is Stage.DATA_DOWNLOAD
    assert result.checkpoint_step is None


def test_a_step_longer_than_the_budget_still_ends_with_a_result(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    job = resumable_job(
        tiny_llama,
        hf_home=tiny_hf_home,
        work_dir=tmp_path / "work",
        checkpoints=tmp_path / "checkpoints",
        grace_seconds=2.0,
        n_checkpoints=4,  # steps 4, 8, 12, 16
    )
    trainer = start_trainer(job, environ=subprocess_environ(offline_env, stall_step=5, stall_seconds=STALL_SECONDS))
    wait_for_line(trainer, "   4/16")
    step_4 = checkpoint_dir(tmp_path / "checkpoints" / "tiny" / "uid-1234", 4) / COMPLETE_FILE
    deadline = time.monotonic() + 120
    while not step_4.exists():  # step 4's checkpoint is written; step 5 stalls for ten minutes
        assert time.monotonic() < deadline, "step 4's checkpoint was never completed"
        time.sleep(0.05)
    signalled = time.monotonic()
    trainer.send_signal(signal.SIGTERM)
    finish(trainer, timeout=STALL_SECONDS / 2)

    # The budget is 2 s (Kubernetes would SIGKILL at 2 s + margin): ended long before the stall would.
    assert time.monotonic() - signalled < STALL_SECONDS / 4
    result = result_of(job)
    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert (result.error.reason, result.error.retryable) == ("Preempted", True)
    assert "grace budget ran out" in result.error.message
    assert result.checkpoint_step == 4
    assert trainer.returncode == result.exit_code
