"""A sharded model whose index names a shard the snapshot lacks is refused as an incomplete checkpoint, not retried.

Without the check, transformers raises FileNotFoundError, which the table reads as an outage
(Internal, Unexpected, retried) with no hint: an incomplete upload would be retried forever.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from kubetune_trainer.classify import classify, exit_code_for
from kubetune_trainer.contract import ErrorClass, Stage
from kubetune_trainer.errors import CheckpointInvalid
from kubetune_trainer.training.setup import load_model


def _sharded(folder: Path, *, tied: bool) -> list[Path]:
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=tied,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder, max_shard_size="20KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 2
    assert (folder / "model.safetensors.index.json").is_file()
    return shards


@pytest.mark.parametrize("tied", [True, False])
def test_a_complete_sharded_model_loads_tied_or_not(tmp_path: Path, tied: bool) -> None:
    _sharded(tmp_path / "model", tied=tied)
    model = load_model(tmp_path / "model", dtype=torch.float32)
    assert (model.lm_head.weight is model.model.embed_tokens.weight) is tied


def test_a_missing_shard_is_a_value_error_naming_it_and_the_fix(tmp_path: Path) -> None:
    shards = _sharded(tmp_path / "model", tied=False)
    shards[1].unlink()

    with pytest.raises(CheckpointInvalid) as refused:
        load_model(tmp_path / "model", dtype=torch.float32)

    error = classify(refused.value, stage=Stage.INITIALIZATION, job_uid="u")
    assert (error.error_class, error.reason, error.retryable) == (ErrorClass.VALUE_ERROR, "WeightShardsMissing", False)
    assert exit_code_for(error) == 3
    assert shards[1].name in error.message
    assert error.hint is not None
    assert "hfModelRevision" in error.hint
