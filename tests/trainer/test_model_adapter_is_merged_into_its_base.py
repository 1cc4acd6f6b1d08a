"""A LoRA adapter repo as fromHfModel: its base is fetched under the same rules and the merge is trained."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from kubetune_trainer.contract import ModelSource, TemplateExpectations
from kubetune_trainer.errors import InvalidInput
from kubetune_trainer.hf_cache import publish_folder
from kubetune_trainer.model_source import inspect_model, prepare_model
from kubetune_trainer.tiny_model import TinyModel

from .refused_models import FAKE_PICKLE

OFFLINE = {"HF_HUB_OFFLINE": "1"}
LORA_PREFIX = "base_model.model."


def test_merged_weights_are_base_plus_scaled_ba(
    tiny_adapter: TinyModel,
    tiny_llama: TinyModel,
    private_hf_home: Path,
    llama_template: TemplateExpectations,
    tmp_path: Path,
) -> None:
    source = ModelSource(repo=tiny_adapter.repo_id, template=llama_template)
    prepared = prepare_model(source, cache_dir=private_hf_home / "hub", environ=OFFLINE, merge_dir=tmp_path / "merged")

    assert prepared.path == tmp_path / "merged"
    assert prepared.revision_sha == tiny_adapter.revision_sha
    assert prepared.lineage is not None
    assert (prepared.lineage.adapter_repo, prepared.lineage.adapter_sha) == (
        tiny_adapter.repo_id,
        tiny_adapter.revision_sha,
    )
    assert (prepared.lineage.base_repo, prepared.lineage.base_sha) == (tiny_llama.repo_id, tiny_llama.revision_sha)
    assert prepared.facts.revision_sha == tiny_llama.revision_sha, "facts describe the model trained: the base"

    config = json.loads((tiny_adapter.snapshot_path / "adapter_config.json").read_text())
    scale = config["lora_alpha"] / config["r"]
    base = load_file(tiny_llama.snapshot_path / "model.safetensors")
    adapter = load_file(tiny_adapter.snapshot_path / "adapter_model.safetensors")
    merged = load_file(prepared.path / "model.safetensors")
    adapted = sorted({k.removeprefix(LORA_PREFIX).rsplit(".lora_", 1)[0] for k in adapter})
    assert len(adapted) == 2 * 2, "q_proj and v_proj of both layers"
    for module in adapted:
        lora_a = adapter[f"{LORA_PREFIX}{module}.lora_A.weight"]
        lora_b = adapter[f"{LORA_PREFIX}{module}.lora_B.weight"]
        expected = base[f"{module}.weight"] + scale * lora_b @ lora_a
        torch.testing.assert_close(merged[f"{module}.weight"], expected, rtol=0, atol=1e-6)
        assert not torch.equal(merged[f"{module}.weight"], base[f"{module}.weight"])
    untouched = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(merged[untouched], base[untouched])

    model = AutoModelForCausalLM.from_pretrained(prepared.path)
    assert type(model).__name__ == "LlamaForCausalLM", "a plain model, no peft wrapper left"
    assert (prepared.path / "tokenizer.json").is_file()
    assert (prepared.path / "chat_template.jinja").is_file()

    again = prepare_model(source, cache_dir=private_hf_home / "hub", environ=OFFLINE, merge_dir=tmp_path / "merged")
    assert again == prepared


def _adapter_variant(tiny_adapter: TinyModel, hf_home: Path, tmp_path: Path, *, name: str, **changes: object) -> str:
    folder = tmp_path / name
    shutil.copytree(tiny_adapter.snapshot_path, folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    if changes.pop("pickle_weights", False):
        (folder / "adapter_model.safetensors").unlink()
        (folder / "adapter_model.bin").write_bytes(FAKE_PICKLE)
    config.update(changes)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    repo = f"tiny-org/{name}"
    publish_folder(folder, repo_id=repo, hub_cache=hf_home / "hub")
    return repo


@pytest.mark.parametrize(
    ("name", "changes", "reason"),
    [
        ("adapter-pickle", {"pickle_weights": True}, "NoSafetensorsWeights"),
        ("adapter-local-base", {"base_model_name_or_path": "/home/me/llama"}, "AdapterBaseUnknown"),
        ("adapter-ia3", {"peft_type": "IA3"}, "UnsupportedAdapter"),
        ("adapter-missing-base", {"base_model_name_or_path": "tiny-org/absent"}, "ModelRepoNotFound"),
    ],
)
def test_an_adapter_that_cannot_be_merged_is_refused(
    tiny_adapter: TinyModel,
    private_hf_home: Path,
    llama_template: TemplateExpectations,
    tmp_path: Path,
    *,
    name: str,
    changes: dict[str, object],
    reason: str,
) -> None:
    repo = _adapter_variant(tiny_adapter, private_hf_home, tmp_path, name=name, **changes)
    source = ModelSource(repo=repo, template=llama_template)
    with pytest.raises(InvalidInput) as refused:
        prepare_model(source, cache_dir=private_hf_home / "hub", environ=OFFLINE, merge_dir=tmp_path / "merged")
    assert refused.value.reason == reason
    assert refused.value.field == "spec.fromHfModel"
    assert not (tmp_path / "merged").exists()


def test_the_base_of_an_adapter_is_held_to_the_model_rules(
    tiny_adapter: TinyModel, private_hf_home: Path, llama_template: TemplateExpectations, tmp_path: Path
) -> None:
    repo = _adapter_variant(
        tiny_adapter, private_hf_home, tmp_path, name="adapter-of-bert", base_model_name_or_path="bad-org/bert-mlm"
    )
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertForMaskedLM"]}))
    (bert / "model.safetensors").write_bytes(b"unused")
    publish_folder(bert, repo_id="bad-org/bert-mlm", hub_cache=private_hf_home / "hub")

    inspection = inspect_model(
        ModelSource(repo=repo, template=llama_template), cache_dir=private_hf_home / "hub", environ=OFFLINE
    )
    assert inspection.base is not None
    assert inspection.base.repo == "bad-org/bert-mlm"
    failed = [o.reason for o in inspection.check.outcomes if o.failed]
    assert failed == ["NotCausalLM"]
