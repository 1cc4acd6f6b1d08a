"""The two-rank out-of-memory run shared by the DDP and FSDP "halve together" tests.

One rank runs out of memory (a test fault); both must halve the micro-batch, redo the step and
train on. The check: the run succeeds, its Result says the micro-batch was reduced at step 1,
and its final weights equal those of one process that trained the same job with no fault (the
effective batch and the loss normalisation do not depend on the micro-batches or the ranks), to
float tolerance.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from kubetune_trainer.contract import Outcome, Strategy, TrainerConfig
from kubetune_trainer.faults import Fault, FaultPlan
from kubetune_trainer.tiny_model import TinyModel

from .preemption_runs import finish, output_weights, result_of, resumable_job, run_in_process, start_trainer


def auto_batch_job(model: TinyModel, *, hf_home: Path, work_dir: Path, strategy: Strategy) -> TrainerConfig:
    """One epoch, one checkpoint, no evaluation, autoBatchOnOOM on, under `strategy`."""
    config = resumable_job(model, hf_home=hf_home, work_dir=work_dir, checkpoints=work_dir / "checkpoints")
    hyperparameters = config.hyperparameters.model_copy(
        update={"n_epochs": 1, "n_evals": 0, "n_checkpoints": 1, "auto_batch_on_oom": True}
    )
    runtime = config.runtime.model_copy(update={"strategy": strategy})
    return config.model_copy(update={"hyperparameters": hyperparameters, "runtime": runtime})


def assert_both_ranks_halve_and_train_exactly(
    model: TinyModel,
    *,
    hf_home: Path,
    offline_env: dict[str, str],
    tmp_path: Path,
    strategy: Strategy,
    fault: Fault,
) -> None:
    """Train once in process with no fault, then on two ranks under `fault`; assert the second halved and matches."""
    reference_job = auto_batch_job(model, hf_home=hf_home, work_dir=tmp_path / "reference", strategy=strategy)
    reference, _ = run_in_process(reference_job, offline_env=offline_env)
    assert reference.outcome is Outcome.SUCCEEDED, reference.error

    faults = FaultPlan(faults=(fault,)).to_env()
    environ = {**offline_env, **faults, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    job = auto_batch_job(model, hf_home=hf_home, work_dir=tmp_path / "two", strategy=strategy)
    output = finish(start_trainer(job, environ=environ, nproc=2), timeout=300)

    assert Path(job.termination_log_path).is_file(), output[-3000:]
    result = result_of(job)
    assert result.outcome is Outcome.SUCCEEDED, output[-3000:]
    reductions = [note.message for note in result.warnings if note.reason == "MicroBatchReduced"]
    assert reductions, result.warnings
    assert "Out of memory at step 1" in reductions[0]
    got, expected = output_weights(job), output_weights(reference_job)
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-4, atol=2e-5, msg=name)
