"""Choosing a template for a model: same family first, never a longer sequence length than the
model has while another template fits, then the closest size; warnings where nothing fits."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetune_operator.resolve.catalog import Catalog
from kubetune_operator.resolve.selection import mismatch_warnings, recommend
from kubetune_trainer.contract import ModelFacts


def facts(model_type: str, parameters: float, max_positions: int | None, *architectures: str) -> ModelFacts:
    return ModelFacts(
        model_type=model_type,
        architectures=list(architectures),
        parameters=int(parameters),
        max_positions=max_positions,
    )


def test_smollm2_gets_llama_2_7b_not_llama_3_2_1b(catalog: Catalog) -> None:
    """The seed's FAQ: SmolLM2-135M (llama, 8192 positions) -> togethercomputer/llama-2-7b-chat."""
    advice = recommend(facts("llama", 134_515_008, 8192, "LlamaForCausalLM"), catalog.templates)
    chosen = catalog.find(advice.template)
    assert chosen is not None
    assert "togethercomputer/llama-2-7b-chat" in chosen.spec.aliases
    assert advice.warnings == []
    assert any("8192 positions" in reason for reason in advice.reasons)


def test_codellama_gets_a_llama_template(catalog: Catalog) -> None:
    advice = recommend(facts("llama", 6_738_546_688, 16384, "LlamaForCausalLM"), catalog.templates)
    chosen = catalog.find(advice.template)
    assert chosen is not None
    assert chosen.spec.architecture.family == "llama"
    assert chosen.spec.max_seq_length <= 16384


def test_qwen2_5_7b_gets_a_qwen_template(catalog: Catalog) -> None:
    advice = recommend(facts("qwen2", 7_615_616_512, 131072, "Qwen2ForCausalLM"), catalog.templates)
    chosen = catalog.find(advice.template)
    assert chosen is not None
    assert chosen.spec.architecture.family == "qwen"
    assert advice.template == "qwen2.5-7b-instruct"


def test_an_unlisted_type_of_a_known_family_uses_the_family(catalog: Catalog) -> None:
    advice = recommend(facts("qwen3_moe", 30.5e9, 40960, "Qwen3MoeForCausalLM"), catalog.templates)
    chosen = catalog.find(advice.template)
    assert chosen is not None
    assert chosen.spec.architecture.family == "qwen"
    assert any("of family qwen" in reason for reason in advice.reasons)
    assert [w.reason for w in advice.warnings] == ["ModelLargerThanTemplates"]


def test_no_architecture_match_takes_the_closest_size_with_a_warning(catalog: Catalog) -> None:
    advice = recommend(facts("falcon", 7.2e9, 2048, "FalconForCausalLM"), catalog.templates)
    assert next(w.reason for w in advice.warnings) == "NoArchitectureMatch"
    chosen = catalog.find(advice.template)
    assert chosen is not None
    assert 6e9 < chosen.spec.parameters < 9e9


def test_larger_than_every_template_gets_the_largest_with_a_warning(catalog: Catalog) -> None:
    advice = recommend(facts("llama", 90e9, 131072), catalog.templates)
    assert advice.template == "meta-llama-3.1-70b-instruct-reference"
    assert "ModelLargerThanTemplates" in [w.reason for w in advice.warnings]


def test_when_no_template_fits_the_sequence_length_it_is_capped_with_a_warning(catalog: Catalog) -> None:
    advice = recommend(facts("llama", 7e9, 2048), catalog.templates)
    assert "SequenceLengthCapped" in [w.reason for w in advice.warnings]
    chosen = catalog.find(advice.template)
    assert chosen is not None
    assert chosen.spec.architecture.family == "llama"


def test_an_empty_catalog_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="catalog is empty"):
        recommend(facts("llama", 1e9, 4096), [])


@settings(max_examples=200, deadline=None)
@given(
    model_type=st.sampled_from(["llama", "qwen2", "qwen3", "mistral", "mixtral", "gemma2", "gemma3", "phi3", "gpt2"]),
    parameters=st.integers(min_value=1_000_000, max_value=200_000_000_000),
    max_positions=st.sampled_from([512, 2048, 4096, 8192, 16384, 32768, 40960, 131072]),
)
def test_a_template_longer_than_the_model_is_never_chosen_while_one_fits(
    catalog: Catalog, model_type: str, parameters: int, max_positions: int
) -> None:
    model = facts(model_type, parameters, max_positions)
    advice = recommend(model, catalog.templates)
    chosen = catalog.find(advice.template)
    assert chosen is not None
    same_type = [t for t in catalog if model_type in t.spec.architecture.model_types]
    if same_type:
        assert model_type in chosen.spec.architecture.model_types
        if any(t.spec.max_seq_length <= max_positions for t in same_type):
            assert chosen.spec.max_seq_length <= max_positions
    if chosen.spec.max_seq_length > max_positions:
        assert "SequenceLengthCapped" in [w.reason for w in advice.warnings]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"model_type": "llama", "parameters": 6.7e9, "max_positions": 4096}, []),
        ({"model_type": "mistral", "parameters": 7e9, "max_positions": 4096}, ["TemplateFamilyMismatch"]),
        ({"model_type": "llama", "parameters": 135e6, "max_positions": 8192}, ["TemplateSizeMismatch"]),
        ({"model_type": "llama", "parameters": 6.7e9, "max_positions": 2048}, ["SequenceLengthCapped"]),
    ],
)
def test_a_model_that_differs_from_its_template_gets_warnings(
    catalog: Catalog, model: dict[str, Any], expected: list[str]
) -> None:
    template = catalog.find("togethercomputer/llama-2-7b-chat")
    assert template is not None
    warnings = mismatch_warnings(facts(model["model_type"], model["parameters"], model["max_positions"]), template)
    assert [w.reason for w in warnings] == expected
    for warning in warnings:
        assert "llama-2-7b-chat" in warning.message
