"""Four FSDP2 ranks (gloo, CPU) write a sharded checkpoint; it resumes on four and on two ranks exactly.

The job is 8 optimizer steps of 4 examples with checkpoints at steps 4 and 8. Four torchrun ranks
train it with FSDP2: each rank writes its own DCP shard file of step 4 (no rank holds the whole
state: every file is well under half of all of them). The step-4 checkpoint is then resumed by
four ranks and by two (resharded on load), and both runs end with the weights of one process
that trained all 8 steps without stopping (to float tolerance: the ranks sum the same gradients
in another order).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import torch

from kubetune_trainer.contract import Outcome, Strategy, TrainerConfig
from kubetune_trainer.tiny_model import TinyModel

from .preemption_runs import finish, output_weights, result_of, resumable_job, run_in_process, start_trainer


def _job(
    model: TinyModel, *, hf_home: Path, work_dir: Path, checkpoints: Path, resume_from: str | None
) -> TrainerConfig:
    config = resumable_job(model, hf_home=hf_home, work_dir=work_dir, checkpoints=checkpoints, resume_from=resume_from)
    hyperparameters = config.hyperparameters.model_copy(update={"n_epochs": 1, "n_evals": 0})
    runtime = config.runtime.model_copy(update={"strategy": Strategy.FSDP})
    return config.model_copy(update={"hyperparameters": hyperparameters, "runtime": runtime})


def _assert_close(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-4, atol=2e-5, msg=name)


def test_four_fsdp_ranks_checkpoint_and_resume_on_four_and_on_two(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    environ = {**offline_env, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    reference_job = _job(
        tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "reference", checkpoints=tmp_path / "r", resume_from=None
    )
    reference, _ = run_in_process(reference_job, offline_env=offline_env)
    assert reference.outcome is Outcome.SUCCEEDED, reference.error
    expected = output_weights(reference_job)

    checkpoints = tmp_path / "checkpoints"
    first = _job(
        tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "first", checkpoints=checkpoints, resume_from=None
    )
    output = finish(start_trainer(first, environ=environ, nproc=4), timeout=300)
    assert result_of(first).outcome is Outcome.SUCCEEDED, output[-3000:]
    _assert_close(output_weights(first), expected)

    step_4 = checkpoints / "tiny" / "uid-1234" / "step-00000004"
    shards = {p.name: p.stat().st_size for p in (step_4 / "shards").glob("*.distcp")}
    assert sorted(shards) == [f"__{rank}_0.distcp" for rank in range(4)]
    # Each rank wrote its own quarter of the weights and optimizer state, never the whole.
    assert max(shards.values()) < 0.5 * sum(shards.values()), shards
    print(f"step-4 shard files (bytes): {shards}")

    for ranks in (4, 2):
        root = tmp_path / f"on-{ranks}"
        shutil.copytree(checkpoints, root / "checkpoints")
        # The finished run kept its saved model for a retry, which would only upload it: this one must train.
        shutil.rmtree(root / "checkpoints" / "tiny" / "uid-1234" / "saved")
        retry = _job(
            tiny_llama,
            hf_home=tiny_hf_home,
            work_dir=root / "work",
            checkpoints=root / "checkpoints",
            resume_from="tiny:4",
        )
        output = finish(start_trainer(retry, environ=environ, nproc=ranks), timeout=300)
        resumed = result_of(retry)
        assert resumed.outcome is Outcome.SUCCEEDED, output[-3000:]
        assert resumed.resumed_from_step == 4
        _assert_close(output_weights(retry), expected)
        if ranks == 2:
            assert "resharding the checkpoint of 4 process(es) onto 2" in output
