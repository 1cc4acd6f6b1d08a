"""The model rules on real config.json files: every catalog model passes with the catalog's own figures,
differences from a template are warnings, and an auto_map on a native architecture is ignored, not run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubetune_operator.resolve.catalog import Catalog
from kubetune_operator.resolve.selection import expectations_of
from kubetune_trainer.contract import TemplateExpectations
from kubetune_trainer.model_rules import RuleStatus, evaluate
from kubetune_trainer.tiny_model import TinyModel

CONFIG_DIR = Path(__file__).resolve().parents[1] / "data" / "model_configs"
CATALOG_CONFIGS = sorted(CONFIG_DIR.glob("*.json"))
WEIGHTS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"]


def _config(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CONFIG_DIR / f"{name}.json").read_text())
    return loaded


@pytest.mark.parametrize("config_file", CATALOG_CONFIGS, ids=[p.stem for p in CATALOG_CONFIGS])
def test_catalog_models_pass_with_the_catalogs_figures(config_file: Path, catalog: Catalog) -> None:
    """Same stored configs as test_catalog_figures: the rules count what the catalog states."""
    template = next(t for t in catalog if config_file.stem in (t.name, t.spec.hf_model.split("/")[-1].lower()))
    check = evaluate(
        json.loads(config_file.read_text()),
        WEIGHTS,
        repo=template.spec.hf_model,
        revision_sha="0" * 40,
        template=expectations_of(template),
    )
    assert check.passed, [o for o in check.outcomes if o.failed]
    assert check.facts is not None
    assert check.facts.parameters == template.spec.parameters
    assert check.facts.max_positions == template.spec.max_seq_length
    # The shape the GPU planner sizes with: the preflight's reading of config.json is the template's.
    assert check.facts.shape is not None
    assert check.facts.shape == template.spec.architecture.shape
    assert check.warnings == [], "a model on its own template differs in nothing"


def test_gemma3_conditional_generation_counts_as_causal_lm(catalog: Catalog) -> None:
    check = evaluate(_config("gemma-3-4b-it"), WEIGHTS, repo="google/gemma-3-4b-it", revision_sha=None, template=None)
    causal = next(o for o in check.outcomes if o.rule == "causal-lm")
    assert causal.status is RuleStatus.PASS
    assert "Gemma3ForConditionalGeneration" in causal.message


def test_auto_map_on_a_native_architecture_is_a_warning_and_ignored(catalog: Catalog) -> None:
    """microsoft/Phi-3-medium-4k-instruct ships modeling_phi3.py; transformers has Phi3 built in."""
    config = {
        **_config("phi-3-medium-4k-instruct"),
        "auto_map": {
            "AutoConfig": "configuration_phi3.Phi3Config",
            "AutoModelForCausalLM": "modeling_phi3.Phi3ForCausalLM",
        },
    }
    check = evaluate(config, WEIGHTS, repo="microsoft/Phi-3-medium-4k-instruct", revision_sha=None, template=None)
    assert check.passed
    remote = next(o for o in check.outcomes if o.rule == "remote-code")
    assert remote.status is RuleStatus.WARN
    assert [w.reason for w in check.warnings] == ["RemoteCodeIgnored"]
    assert "never runs" in check.warnings[0].message


def test_an_architecture_transformers_does_not_know_is_refused() -> None:
    config = {"model_type": "llama99", "architectures": ["Llama99ForCausalLM"]}
    check = evaluate(config, ["model.safetensors"], repo="future/llama99", revision_sha=None, template=None)
    (failed,) = [o for o in check.outcomes if o.failed]
    assert failed.reason == "UnsupportedArchitecture"
    assert "llama99" in failed.message


def test_a_template_mismatch_is_a_warning_never_a_refusal(
    tiny_qwen2: TinyModel, llama_template: TemplateExpectations
) -> None:
    config = json.loads((tiny_qwen2.snapshot_path / "config.json").read_text())
    check = evaluate(
        config,
        ["model.safetensors"],
        repo=tiny_qwen2.repo_id,
        revision_sha=tiny_qwen2.revision_sha,
        template=llama_template,
    )
    assert check.passed
    assert [w.reason for w in check.warnings] == [
        "TemplateFamilyMismatch",
        "TemplateSizeMismatch",
        "SequenceLengthCapped",
    ]
    assert all(llama_template.name in w.message for w in check.warnings)


def test_a_transformers_version_at_the_ceiling_passes(llama_template: TemplateExpectations) -> None:
    config = {**_config("llama-2-7b-chat"), "transformers_version": llama_template.transformers_ceiling}
    check = evaluate(config, WEIGHTS, repo="meta-llama/Llama-2-7b-chat-hf", revision_sha=None, template=llama_template)
    assert check.passed


def test_an_architecture_the_memory_plan_was_never_checked_against_is_a_warning() -> None:
    """DeepSeek V3 (native in transformers, its attention compressed) passes; the plan sizes it from its widths, and
    the job is told that figure is unchecked and what catches it being wrong. A measured architecture is not."""
    config = {
        "model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"], "hidden_size": 2048,
        "intermediate_size": 11264, "moe_intermediate_size": 1408, "num_hidden_layers": 27, "num_attention_heads": 16,
        "num_key_value_heads": 16, "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6,
        "first_k_dense_replace": 1, "vocab_size": 163840, "q_lora_rank": None, "kv_lora_rank": 512,
        "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "tie_word_embeddings": False,
    }  # fmt: skip
    check = evaluate(config, WEIGHTS, repo="moonshotai/Moonlight-16B-A3B", revision_sha=None, template=None)
    assert check.passed, [o for o in check.outcomes if o.failed]
    assert [w.reason for w in check.warnings] == ["MemoryPlanUnmeasured"]
    assert "model_type deepseek_v3" in check.warnings[0].message
    assert "hyperparameters.autoBatchOnOOM" in check.warnings[0].message
    assert check.facts is not None
    assert check.facts.shape is not None
    assert (check.facts.shape.num_experts, check.facts.shape.dense_layers) == (64, 1)
    llama = evaluate(_config("llama-2-7b-chat"), WEIGHTS, repo="meta-llama/Llama-2-7b-chat-hf", revision_sha=None,
                     template=None)  # fmt: skip
    assert llama.warnings == []
