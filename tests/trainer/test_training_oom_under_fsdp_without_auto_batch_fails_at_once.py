"""Under FSDP with autoBatchOnOOM off, a rank out of memory fails at once, never entering a mismatched collective.

FSDP gathers each block's weights inside the forward pass, so a rank that stops mid-forward
leaves its peers in an all-gather it will never join. Without autoBatchOnOOM the flag checks in
front of each all-gather (`training.fsdp_oom`) are not installed, so the rank must not enter any
"ran out" flag all-reduce (the two ranks would sit in different collectives: a hang until the
backend's timeout, or garbage). It exits instead; torchrun then stops its peer. (With
autoBatchOnOOM on, test_training_oom_two_fsdp_ranks_halve_together shows both ranks retrying.)
"""

from __future__ import annotations

from pathlib import Path

from kubetune_trainer.faults import Fault
from kubetune_trainer.tiny_model import TinyModel

from .local_runs import assert_ended_at_once_as_cuda_oom, fsdp_oom_run


def test_one_rank_out_of_memory_under_fsdp_without_auto_batch_ends_the_run_as_cuda_oom(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    run, elapsed = fsdp_oom_run(
        tmp_path,
        model_repo=tiny_llama.repo_id,
        hf_home=tiny_hf_home,
        environ=offline_env,
        name="oom-fsdp",
        auto_batch=False,
        fault=Fault(kind="oom", step=1, rank=1),
    )

    assert_ended_at_once_as_cuda_oom(run, elapsed)
