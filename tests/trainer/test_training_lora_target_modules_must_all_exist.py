"""Every name in lora.targetModules must be a module of the model, or the job is refused by field.

peft refuses a list only when no name matches; `[q_proj, v_prj]` would train q_proj alone.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3TextConfig,
    MixtralConfig,
    SiglipVisionConfig,
)

from kubetune_trainer.contract import LoraConfig
from kubetune_trainer.errors import InvalidInput
from kubetune_trainer.memory_model import ModelShape
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


def _tiny_mixtral() -> torch.nn.Module:
    config = MixtralConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
        num_local_experts=4, num_experts_per_tok=2, vocab_size=101,
    )  # fmt: skip
    torch.manual_seed(0)
    model: torch.nn.Module = AutoModelForCausalLM.from_config(config)
    return model


def test_dropout_on_a_mixture_of_experts_stacked_experts_is_refused_by_field() -> None:
    """peft adapts Mixtral's stacked experts (all-linear does) as parameters, which take no dropout: the job is
    told which field to change, not that its target modules are missing."""
    with pytest.raises(InvalidInput) as refused:
        apply_lora(_tiny_mixtral(), LoraConfig(r=4, alpha=8, dropout=0.1, target_modules=["all-linear"], merge=False))
    assert (refused.value.field, refused.value.reason) == ("lora.dropout", "LoraDropoutUnsupported")
    assert "q_proj, k_proj, v_proj, o_proj" in refused.value.hint
    attention = ["q_proj", "k_proj", "v_proj", "o_proj"]
    adapted = apply_lora(_tiny_mixtral(), LoraConfig(r=4, alpha=8, dropout=0.1, target_modules=attention, merge=False))
    assert sum(p.numel() for p in adapted.parameters() if p.requires_grad) > 0


def test_all_linear_on_a_mixture_of_experts_adapts_the_experts_and_warns_nothing() -> None:
    """peft's own patterns for the fused gate_up stack apply (twice the rank, the same scaling) although peft
    warns that they matched nothing; the trainer's log does not carry that warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adapted = apply_lora(
            _tiny_mixtral(), LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=["all-linear"], merge=False)
        )
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    stacks = {
        module.parameter_name: (module.r["default"], module.scaling["default"])
        for module in adapted.modules()
        if getattr(module, "parameter_name", None) in ("gate_up_proj", "down_proj")
    }
    assert stacks == {"gate_up_proj": (8, 2.0), "down_proj": (4, 2.0)}


def test_a_multimodal_model_s_image_side_gets_no_adapters() -> None:
    """Text training never runs Gemma 3's vision tower or projector: all-linear (or a list naming q_proj, which the
    vision tower has too) adapts the language model alone, as many parameters as the plan counts from its text
    config."""
    text = Gemma3TextConfig(
        vocab_size=101, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8,
    )  # fmt: skip
    vision = SiglipVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14
    )
    config = Gemma3Config(
        text_config=text.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4, image_token_index=100,
        boi_token_index=99, eoi_token_index=98,
    )  # fmt: skip
    for targets in (["all-linear"], ["q_proj", "v_proj"]):
        torch.manual_seed(0)
        adapted = apply_lora(
            Gemma3ForConditionalGeneration(config),
            LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=targets, merge=False),
        )
        trainable = [name for name, p in adapted.named_parameters() if p.requires_grad]
        assert trainable
        assert all(".language_model." in name for name in trainable), trainable
    assert sum(p.numel() for p in adapted.parameters() if p.requires_grad) == 2 * 4 * ((32 + 32) + (32 + 16))
    torch.manual_seed(0)
    everything = apply_lora(Gemma3ForConditionalGeneration(config), _lora("all-linear"))
    shape = ModelShape.from_config(config.to_dict())
    assert sum(p.numel() for p in everything.parameters() if p.requires_grad) == shape.lora_parameters(4)
