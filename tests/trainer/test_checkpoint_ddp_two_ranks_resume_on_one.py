"""Two DDP ranks (gloo, CPU) checkpoint; one plain process resumes the checkpoint exactly.

As a 2-pod job preempted and retried as a 1-pod job: the step-4 checkpoint of a 2-rank DDP run
(each rank wrote a shard file and its RNG states) is loaded by a single process, which trains
steps 5-8 and ends with the weights of one process that trained all 8 steps without stopping.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import torch

from kubetune_trainer.contract import Outcome, TrainerConfig
from kubetune_trainer.tiny_model import TinyModel

from .preemption_runs import finish, output_weights, result_of, resumable_job, run_in_process, start_trainer


def _job(
    model: TinyModel, *, hf_home: Path, work_dir: Path, checkpoints: Path, resume_from: str | None
) -> TrainerConfig:
    config = resumable_job(model, hf_home=hf_home, work_dir=work_dir, checkpoints=checkpoints, resume_from=resume_from)
    hyperparameters = config.hyperparameters.model_copy(update={"n_epochs": 1, "n_evals": 0})
    return config.model_copy(update={"hyperparameters": hyperparameters})


def test_a_two_rank_checkpoint_resumes_in_one_process_exactly(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    reference_job = _job(
        tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "reference", checkpoints=tmp_path / "r", resume_from=None
    )
    assert run_in_process(reference_job, offline_env=offline_env)[0].outcome is Outcome.SUCCEEDED

    checkpoints = tmp_path / "checkpoints"
    first = _job(
        tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "first", checkpoints=checkpoints, resume_from=None
    )
    environ = {**offline_env, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    output = finish(start_trainer(first, environ=environ, nproc=2), timeout=300)
    assert result_of(first).outcome is Outcome.SUCCEEDED, output[-3000:]
    shards = sorted(p.name for p in (checkpoints / "tiny" / "uid-1234" / "step-00000004" / "shards").glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"]
    # The finished run kept its saved model for a retry, which would only upload it: this one must train.
    shutil.rmtree(checkpoints / "tiny" / "uid-1234" / "saved")

    retry = _job(
        tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "retry", checkpoints=checkpoints, resume_from="tiny:4"
    )
    resumed, losses = run_in_process(retry, offline_env=offline_env)

    assert resumed.outcome is Outcome.SUCCEEDED, resumed.error
    assert resumed.resumed_from_step == 4
    assert sorted(losses) == [5, 6, 7, 8]
    got, expected = output_weights(retry), output_weights(reference_job)
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-4, atol=2e-5, msg=name)
