"""A real trainer whose step 3 hangs is ended by its step watchdog, with its Result written.

`python -m kubetune_trainer --config FILE` (what pods run) on a tiny Llama, with the test-only
fault hook (KUBETUNE_FAULT_INJECTION) sleeping 600 s inside step 3's forward pass and a watchdog
floor of 10 s. The steps before take milliseconds (a second or two on a loaded machine), so the
floor is the limit: the process exits with the Internal code well before the stall would end,
and its termination message says Internal / Stalled / retryable in Training, with the newest
complete checkpoint to resume from.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from kubetune_trainer.contract import ErrorClass, Outcome, Result, Stage
from kubetune_trainer.faults import Fault, FaultPlan
from kubetune_trainer.tiny_model import TinyModel

from .training_jobs import chat_lines, trainer_config, write_jsonl

STALL_SECONDS = 600.0
FLOOR_SECONDS = 10.0


def test_a_step_that_never_ends_fails_the_run_as_stalled(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    base = trainer_config(
        tiny_llama,
        work_dir=tmp_path / "work",
        training_file=write_jsonl(tmp_path / "train.jsonl", chat_lines(32, seed=3)),
        batch_size=4,
        n_evals=0,
        n_checkpoints=4,  # 8 steps: checkpoints at steps 2, 4, 6 and 8
    )
    runtime = base.runtime.model_copy(
        update={"cache_dir": str(tiny_hf_home / "hub"), "step_watchdog_floor_seconds": FLOOR_SECONDS}
    )
    config = base.model_copy(update={"runtime": runtime})
    config_file = tmp_path / "trainer-config.json"
    config_file.write_text(config.to_json(), encoding="utf-8")
    stall = FaultPlan(faults=(Fault(kind="stall", step=3, seconds=STALL_SECONDS),))

    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "kubetune_trainer", "--config", str(config_file)],
        env={**offline_env, **stall.to_env()},
        capture_output=True,
        text=True,
        timeout=STALL_SECONDS,
        check=False,
    )
    took = time.monotonic() - started

    assert done.returncode == 1, done.stderr
    assert took < STALL_SECONDS / 2, f"the watchdog took {took:.0f}s to end a run stalled for {STALL_SECONDS:.0f}s"
    result = Result.from_termination_message(Path(config.termination_log_path).read_text(encoding="utf-8"))
    assert result.outcome is Outcome.FAILED
    assert result.exit_code == 1
    assert result.error is not None
    assert (result.error.error_class, result.error.reason, result.error.retryable, result.error.stage) == (
        ErrorClass.INTERNAL,
        "Stalled",
        True,
        Stage.TRAINING,
    )
    assert "after step 2" in result.error.message
    assert result.checkpoint_step == 2  # the retry resumes from the checkpoint written before the stall
    assert "no training step completed" in done.stderr
    assert not (Path(config.output.uri)).exists()
