"""Under FSDP, an OOM in a backward pass cannot be agreed on: the run fails at once as CudaOOM, no rank hangs.

With autoBatchOnOOM on, the flag checks (`training.fsdp_oom`) cover the forward passes only. In a
backward each layer's weights are gathered again and the last micro-batch's gradients are
reduce-scattered, so a rank that runs out there has peers inside collectives it will not join.
It must not enter any flag all-reduce: it exits with CudaOOM naming the backward, and torchrun
stops its peer well before any collective timeout.
"""

from __future__ import annotations

from pathlib import Path

from kubetune_trainer.faults import Fault
from kubetune_trainer.tiny_model import TinyModel

from .local_runs import assert_ended_at_once_as_cuda_oom, fsdp_oom_run


def test_one_rank_out_of_memory_in_an_fsdp_backward_ends_the_run_as_cuda_oom(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    run, elapsed = fsdp_oom_run(
        tmp_path,
        model_repo=tiny_llama.repo_id,
        hf_home=tiny_hf_home,
        environ=offline_env,
        name="oom-fsdp-backward",
        auto_batch=True,
        fault=Fault(kind="oom", step=1, rank=1, layer=0, backward=True),
    )

    error = assert_ended_at_once_as_cuda_oom(run, elapsed)
    assert error.reason == "OutOfMemory"
    assert "in a backward pass" in error.message
    assert "in decoder layer 0's backward" in error.message
