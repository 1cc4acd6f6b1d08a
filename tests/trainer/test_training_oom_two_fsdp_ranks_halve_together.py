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

from pathlib import Path

import pytest

from kubetune_trainer.contract import Strategy
from kubetune_trainer.faults import Fault
from kubetune_trainer.tiny_model import TinyModel

from .two_rank_oom_runs import assert_both_ranks_halve_and_train_exactly


@pytest.mark.parametrize("layer", [0, 1])
def test_rank_1_runs_out_in_a_layer_and_both_fsdp_ranks_halve_and_train_exactly(
    layer: int, tiny_llama: TinyModel, tiny_hf_home: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    assert_both_ranks_halve_and_train_exactly(
        tiny_llama,
        hf_home=tiny_hf_home,
        offline_env=offline_env,
        tmp_path=tmp_path,
        strategy=Strategy.FSDP,
        fault=Fault(kind="oom", rank=1, layer=layer, above_tokens=64),
    )
