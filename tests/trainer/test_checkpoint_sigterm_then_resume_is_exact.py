"""SIGTERM at step k checkpoints and ends Preempted; the retry resumes to the end exactly.

The real trainer runs as a subprocess and gets a real SIGTERM while step 5 runs (a test-only stall
holds it). Its Result is Internal, Preempted, retryable, with checkpoint step 5. The retry
(`resumeFrom: tiny`, the newest complete checkpoint) then trains steps 6-16, and its losses and
final weights match a run that was never interrupted, with the same seed: full fine-tuning and LoRA.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from kubetune_trainer.contract import LoraConfig, Outcome
from kubetune_trainer.tiny_model import TinyModel

from .preemption_runs import (
    assert_same_weights,
    finish,
    output_weights,
    result_of,
    resumable_job,
    run_in_process,
    start_trainer,
    step_losses,
    subprocess_environ,
    wait_for_line,
)

LORA = LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=["all-linear"], merge=True)


@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
def test_sigterm_checkpoints_and_the_retry_resumes_exactly(
    lora: LoraConfig | None, tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    reference_job = resumable_job(
        tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "reference", checkpoints=tmp_path / "r", lora=lora
    )
    reference, reference_losses = run_in_process(reference_job, offline_env=offline_env)
    assert reference.outcome is Outcome.SUCCEEDED
    assert sorted(reference_losses) == list(range(1, 17))

    first = resumable_job(
        tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "first", checkpoints=checkpoints, lora=lora
    )
    trainer = start_trainer(first, environ=subprocess_environ(offline_env, stall_step=5, stall_seconds=4.0))
    lines = wait_for_line(trainer, "   4/16")  # step 4 done: step 5 is stalled now
    trainer.send_signal(signal.SIGTERM)
    rest = finish(trainer)

    preempted = result_of(first)
    assert preempted.outcome is Outcome.FAILED, rest
    assert preempted.error is not None
    assert (preempted.error.error_class.value, preempted.error.reason, preempted.error.retryable) == (
        "Internal",
        "Preempted",
        True,
    )
    assert preempted.error.stage is not None
    assert preempted.error.stage.value == "Training"
    assert preempted.checkpoint_step == 5
    assert trainer.returncode == preempted.exit_code != 0
    assert (checkpoints / "tiny" / "uid-1234" / "step-00000005" / "COMPLETE").is_file()
    # Steps 1-5 ran as in the reference (the progress log shows 4 decimals).
    before = step_losses(lines + rest.splitlines())
    assert sorted(before) == [1, 2, 3, 4, 5]
    assert all(abs(before[step] - reference_losses[step]) < 1e-4 for step in before)

    retry = resumable_job(
        tiny_llama,
        hf_home=tiny_hf_home,
        work_dir=tmp_path / "retry",
        checkpoints=checkpoints,
        lora=lora,
        resume_from="tiny",
    )
    resumed, resumed_losses = run_in_process(retry, offline_env=offline_env)

    assert resumed.outcome is Outcome.SUCCEEDED, resumed.error
    assert resumed.resumed_from_step == 5
    assert resumed.checkpoint_step == 16
    assert sorted(resumed_losses) == list(range(6, 17))  # steps 1-5 were not run again
    assert resumed_losses == {step: reference_losses[step] for step in range(6, 17)}
    assert_same_weights(output_weights(retry), output_weights(reference_job))
