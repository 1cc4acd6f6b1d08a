"""Two DDP ranks (gloo, CPU): when one runs out of memory, both halve the micro-batch, redo the step, and train exactly.

The fault hook makes rank 1 alone run out of memory in every forward pass whose micro-batch holds
more than 64 tokens. Rank 0 never does: it learns from the step's "ran out" flag all-reduce, and
both ranks agree on the smaller budget, re-plan the same step and go on. The run succeeds; its
Result says the micro-batch was reduced; its final weights equal those of one process that
trained the same job with no fault (the effective batch and the loss normalisation do not depend
on the micro-batches or the ranks), to float tolerance.
"""

from __future__ import annotations

from pathlib import Path

from kubetune_trainer.contract import Strategy
from kubetune_trainer.faults import Fault
from kubetune_trainer.tiny_model import TinyModel

from .two_rank_oom_runs import assert_both_ranks_halve_and_train_exactly


def test_rank_1_runs_out_and_both_ranks_halve_and_train_exactly(
    tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    assert_both_ranks_halve_and_train_exactly(
        tiny_llama,
        hf_home=tiny_hf_home,
        offline_env=offline_env,
        tmp_path=tmp_path,
        strategy=Strategy.DDP,
        fault=Fault(kind="oom", rank=1, above_tokens=64),
    )
