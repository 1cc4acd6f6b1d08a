"""Weights missing from a snapshot are refused at load, not silently replaced by random ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from kubetune_trainer.contract import ErrorClass
from kubetune_trainer.errors import CheckpointInvalid
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.setup import load_model


def test_a_snapshot_missing_a_layer_weight_is_checkpoint_invalid(tiny_llama: TinyModel, tmp_path: Path) -> None:
    snapshot = tmp_path / "snapshot"
    shutil.copytree(tiny_llama.snapshot_path, snapshot)
    weights = load_file(str(snapshot / "model.safetensors"))
    (snapshot / "model.safetensors").unlink()
    del weights["model.layers.1.mlp.down_proj.weight"]
    save_file(weights, str(snapshot / "model.safetensors"), metadata={"format": "pt"})

    with pytest.raises(CheckpointInvalid) as caught:
        load_model(snapshot, dtype=torch.float32)

    assert caught.value.error_class is ErrorClass.VALUE_ERROR
    assert caught.value.reason == "WeightsDoNotMatchConfig"
    assert "model.layers.1.mlp.down_proj.weight" in caught.value.message
    assert caught.value.field == "fromHfModel"
