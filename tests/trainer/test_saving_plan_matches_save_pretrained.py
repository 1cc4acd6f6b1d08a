"""The streamed output's files are planned as transformers plans them, and hold what `save_pretrained` writes.

The plan is pure (names and sizes): it must group tensors into files exactly as huggingface_hub's
splitter does, a tensor over the limit included. Written in one process (plain tensors, the
path FSDP2's DTensors take with a gather before each), a model with tied input and output
embeddings is saved once under the embedding's name, as `save_pretrained` saves it, and loads
back tied with the same weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from huggingface_hub import split_torch_state_dict_into_shards
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaConfig

from kubetune_trainer.saving.shards import TensorSize, plan_shards
from kubetune_trainer.saving.sources import full_model_tensors
from kubetune_trainer.saving.stream import write_config, write_streamed

LIMIT = 40_000


def _tied_model() -> Any:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    return AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]


def test_the_plan_groups_tensors_as_huggingface_hub_does() -> None:
    sizes = [1_000, 30_000, 50_000, 9_000, 2_000, 39_000, 1, 40_000, 40_001]
    state = {f"t{i}": torch.zeros(size, dtype=torch.uint8) for i, size in enumerate(sizes)}

    plan = plan_shards([TensorSize(name, t.numel(), t.numel()) for name, t in state.items()], max_bytes=LIMIT)

    expected = split_torch_state_dict_into_shards(
        state, filename_pattern="model{suffix}.safetensors", max_shard_size=LIMIT
    )
    assert {shard.filename: list(shard.names) for shard in plan} == expected.filename_to_tensors
    assert sum(shard.nbytes for shard in plan) == expected.metadata["total_size"]


def test_a_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        plan_shards([TensorSize("a", 1, 4)], max_bytes=0)


def test_tied_embeddings_are_written_once_as_save_pretrained_writes_them(tmp_path: Path) -> None:
    model = _tied_model()
    model.save_pretrained(tmp_path / "expected", max_shard_size=LIMIT)

    (tmp_path / "streamed").mkdir()
    write_streamed(tmp_path / "streamed", full_model_tensors(model), writes=True, max_shard_bytes=LIMIT)
    write_config(tmp_path / "streamed", model)

    def tensors(folder: Path) -> dict[str, torch.Tensor]:
        found: dict[str, torch.Tensor] = {}
        for path in folder.glob("*.safetensors"):
            found |= load_file(path)
        return found

    streamed, expected = tensors(tmp_path / "streamed"), tensors(tmp_path / "expected")
    assert "lm_head.weight" not in streamed
    assert streamed.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(streamed[name], tensor), name
    assert len(list((tmp_path / "streamed").glob("*.safetensors"))) > 1
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "streamed")
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()
    for name, tensor in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor), name
