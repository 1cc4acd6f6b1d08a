"""SIGTERM to the torchrun agent reaches both ranks: they agree on the step, checkpoint, end Preempted.

Kubernetes signals the container's main process, which in a trainer pod is `torchrun`. Its agent
forwards SIGTERM to every worker; both ranks see it at the same step boundary (the flag rides on
the step's loss all-reduce), write one checkpoint together with both ranks' RNG states, and end
with Internal, Preempted, retryable and the checkpoint step. A retry under torchrun then resumes
from it and finishes.
"""

from __future__ import annotations

import signal
from pathlib import Path

from kubetune_trainer.contract import Outcome
from kubetune_trainer.tiny_model import TinyModel

from .preemption_runs import (
    finish,
    result_of,
    resumable_job,
    start_trainer,
    step_losses,
    subprocess_environ,
    wait_for_line,
)


def test_sigterm_to_torchrun_checkpoints_both_ranks_and_the_retry_finishes(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    environ = subprocess_environ(offline_env, stall_step=3, stall_seconds=4.0)
    first = resumable_job(tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "first", checkpoints=checkpoints)
    agent = start_trainer(first, environ=environ, nproc=2)
    wait_for_line(agent, "   2/16")  # step 3 is stalled on both ranks now
    agent.send_signal(signal.SIGTERM)
    output = finish(agent)

    preempted = result_of(first)
    assert preempted.error is not None, output
    assert (preempted.error.error_class.value, preempted.error.reason, preempted.error.retryable) == (
        "Internal",
        "Preempted",
        True,
    )
    assert preempted.checkpoint_step == 3
    checkpoint = checkpoints / "tiny" / "uid-1234" / "step-00000003"
    assert (checkpoint / "COMPLETE").is_file()
    assert sorted(p.name for p in checkpoint.glob("rng-*.pt")) == ["rng-0.pt", "rng-1.pt"]

    retry = resumable_job(
        tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "retry", checkpoints=checkpoints, resume_from="tiny:3"
    )
    resumed = start_trainer(retry, environ=environ, nproc=2)
    output = finish(resumed)

    result = result_of(retry)
    assert result.outcome is Outcome.SUCCEEDED, output[-3000:]
    assert result.resumed_from_step == 3
    assert result.checkpoint_step == 16
    assert sorted(step_losses(output.splitlines())) == list(range(4, 17))  # steps 1-3 are not run again
