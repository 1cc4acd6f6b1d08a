"""Every name in lora.targetModules must be a module of the model, or the job is refused by field.

peft refuses a list only when no name matches; `[q_proj, v_prj]` would train q_proj alone.
"""

from __future__ import annotations

import pytest
import torch

from kubetune_trainer.contract import LoraConfig
from kubetune_trainer.errors import InvalidInput
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.lora import apply_lora
from kubetune_trainer.training.setup import load_model


def _lora(*targets: str) -> LoraConfig:
    return LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=list(targets), merge=False)


def test_a_misspelt_target_beside_a_correct_one_is_refused(tiny_llama: TinyModel) -> None:
    model = load_model(tiny_llama.snapshot_path, dtype=torch.float32)
    with pytest.raises(InvalidInput) as refused:
        apply_lora(model, _lora("q_proj", "v_prj"))
    assert refused.value.field == "lora.targetModules"
    assert refused.value.reason == "LoraTargetModulesNotFound"
    assert "v_prj" in refused.value.message
    assert "v_proj" in refused.value.message  # the names it could have meant


def test_existing_targets_are_adapted(tiny_llama: TinyModel) -> None:
    model = apply_lora(load_model(tiny_llama.snapshot_path, dtype=torch.float32), _lora("q_proj", "v_proj"))
    adapted = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name, p in model.named_parameters() if p.requires_grad}
    assert adapted == {"q_proj", "v_proj"}
