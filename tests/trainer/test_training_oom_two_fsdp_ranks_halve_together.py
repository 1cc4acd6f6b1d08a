"""Two FSDP2 ranks (gloo, CPU): one runs out of memory mid-forward; both halve, redo the step and train exactly.

Under FSDP2 every decoder layer all-gathers its weights as its forward starts. The fault hook makes
rank 1 alone run out of memory inside a decoder layer's forward (after that layer's weights were
gathered, where a real OOM in its activations strikes) whenever the micro-batch holds more than 64
tokens. Rank 0 does not: it goes on, and must learn that its peer ran out from the next check
(`training.fsdp_oom`) rather than wait in a collective rank 1 never joins: in front of layer 1's
all-gather when rank 1 ran out in layer 0, the check that ends the forward (after the head and the
loss) when it ran out in layer 1, the tiny model's last. Both ranks then agree on the smaller
budget, reset FSDP's state, redo the step and go on. The run succeeds, its Result says the
micro-batch was reduced, and its final weights equal those of one process that trained the same
job with no fault, to float tolerance.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from kubetune_trainer.contract import Outcome, Strategy, TrainerConfig
from kubetune_trainer.faults import Fault, FaultPlan
from kubetune_trainer.tiny_model import TinyModel

from .preemption_runs import finish, output_weights, result_of, resumable_job, run_in_process, start_trainer


def _job(model: TinyModel, *, hf_home: Path, work_dir: Path) -> TrainerConfig:
    config = resumable_job(model, hf_home=hf_home, work_dir=work_dir, checkpoints=work_dir / "checkpoints")
    hyperparameters = config.hyperparameters.model_copy(
        update={"n_epochs": 1, "n_evals": 0, "n_checkpoints": 1, "auto_batch_on_oom": True}
    )
    runtime = config.runtime.model_copy(update={"strategy": Strategy.FSDP})
    return config.model_copy(update={"hyperparameters": hyperparameters, "runtime": runtime})


@pytest.mark.parametrize("layer", [0, 1])
def test_rank_1_runs_out_in_a_layer_and_both_fsdp_ranks_halve_and_train_exactly(
    layer: int, tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    reference_job = _job(tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "reference")
    reference, _ = run_in_process(reference_job, offline_env=offline_env)
    assert reference.outcome is Outcome.SUCCEEDED, reference.error

    faults = FaultPlan(faults=(Fault(kind="oom", rank=1, layer=layer, above_tokens=64),)).to_env()
    environ = {**offline_env, **faults, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    job = _job(tiny_llama, hf_home=tiny_hf_home, work_dir=tmp_path / "two")
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
