"""Where the trainer calls peft (the LoRA wrap, checkpoint export, the adapter merge, output verification)
a user's log shows no FutureWarning: peft 0.21 reads transformers' deprecated `is_gradient_checkpointing`
on every model it wraps or loads, and only that message is dropped, only around those calls."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from kubetune_trainer.adapter import AdapterLineage, merge_adapter
from kubetune_trainer.contract import LoraConfig
from kubetune_trainer.peft_models import PEFT_DEPRECATION, load_adapter, peft_deprecation_silenced
from kubetune_trainer.tiny_model import TinyModel
from kubetune_trainer.training.lora import apply_lora

pytestmark = pytest.mark.filterwarnings("error::FutureWarning")


def test_wrapping_a_model_for_lora_training_warns_nothing(tiny_llama: TinyModel) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_llama.snapshot_path)
    wrapped = apply_lora(model, LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=["all-linear"], merge=False))
    assert type(wrapped).__name__ == "PeftModelForCausalLM"


def test_merging_an_adapter_into_its_base_warns_nothing(
    tiny_adapter: TinyModel, tiny_llama: TinyModel, tmp_path: Path
) -> None:
    lineage = AdapterLineage(
        adapter_repo=tiny_adapter.repo_id,
        adapter_sha=tiny_adapter.revision_sha,
        base_repo=tiny_llama.repo_id,
        base_sha=tiny_llama.revision_sha,
    )
    merged = merge_adapter(
        base_path=tiny_llama.snapshot_path,
        adapter_path=tiny_adapter.snapshot_path,
        output_dir=tmp_path / "merged",
        lineage=lineage,
    )
    assert (merged / "model.safetensors").is_file()


def test_loading_an_adapter_as_verification_does_warns_nothing(tiny_adapter: TinyModel, tiny_llama: TinyModel) -> None:
    base = AutoModelForCausalLM.from_pretrained(tiny_llama.snapshot_path)
    adapted = load_adapter(base, tiny_adapter.snapshot_path, local_files_only=True)
    assert type(adapted).__name__ == "PeftModelForCausalLM"


def test_peft_itself_still_warns_so_the_filter_is_still_needed(tiny_adapter: TinyModel, tiny_llama: TinyModel) -> None:
    """When a peft release stops reading the alias this fails: then peft_models' filter can go."""
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(tiny_llama.snapshot_path)
    with pytest.warns(FutureWarning, match=PEFT_DEPRECATION):
        PeftModel.from_pretrained(base, str(tiny_adapter.snapshot_path), local_files_only=True)


def test_the_filter_drops_that_message_of_that_category_only() -> None:
    message = "`is_gradient_checkpointing` is deprecated and will be removed in v6."
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with peft_deprecation_silenced():
            warnings.warn(message, FutureWarning, stacklevel=1)
            warnings.warn("another FutureWarning", FutureWarning, stacklevel=1)
            warnings.warn(message, DeprecationWarning, stacklevel=1)
    assert [(type(w.message), str(w.message)) for w in seen] == [
        (FutureWarning, "another FutureWarning"),
        (DeprecationWarning, message),
    ]
