"""The template catalog: stored once in the chart, valid, complete, and DNS-safe."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune_operator.api.errors import InvalidResourceError
from kubetune_operator.api.names import object_name_for_alias
from kubetune_operator.resolve.catalog import Catalog, load_catalog, packaged_catalog_dir, parse_templates

from .conftest import CATALOG_DIR, CrdValidator

REQUIRED_ALIASES = [
    "togethercomputer/llama-2-7b-chat",
    "meta-llama/Llama-3-8b-chat-hf",
    "meta-llama/Llama-3.2-1B-Instruct",
    "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
    "meta-llama/Meta-Llama-3.1-70B-Instruct-Reference",
    "Qwen/Qwen3-4B",
    "Qwen/Qwen2.5-7B-Instruct",
    "mistralai/Mistral-7B-Instruct-v0.1",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "google/gemma-2-9b-it",
    "google/gemma-3-4b-it",
    "microsoft/phi-3-medium-4k-instruct",
]


def test_catalog_covers_the_seed_models(catalog: Catalog) -> None:
    for alias in REQUIRED_ALIASES:
        assert catalog.find(alias) is not None, alias
    assert len(catalog) >= len(REQUIRED_ALIASES)


def test_object_names_are_dns_safe_forms_of_the_alias(catalog: Catalog) -> None:
    for template in catalog:
        assert "/" not in template.name
        assert template.name == object_name_for_alias(template.spec.aliases[0])
        assert catalog.find(template.name) is template


def test_the_package_ships_the_chart_catalog_not_a_copy(catalog: Catalog) -> None:
    shipped = packaged_catalog_dir()
    assert Path(str(shipped)).resolve() == CATALOG_DIR.resolve()
    assert load_catalog() == catalog


@pytest.mark.parametrize("path", sorted(CATALOG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_each_template_passes_the_crd_schema(path: Path, template_schema: CrdValidator) -> None:
    assert template_schema.errors(yaml.safe_load(path.read_text())) == []


def test_limits_and_resources_are_coherent(catalog: Catalog) -> None:
    for t in catalog:
        limits = t.spec.limits
        assert limits.min_learning_rate <= 1e-5 <= limits.max_learning_rate, "Together's default lr is allowed"
        assert limits.lora_training is not None
        assert "all-linear" in limits.lora_training.target_modules
        assert t.spec.resources.gpus_per_node >= 1
        assert t.spec.resources.gpu_product
        if t.spec.parameters > 20e9:
            assert t.spec.resources.nodes > 1, t.name
            assert t.spec.training.strategy == "fsdp", t.name


def _template_document() -> dict[str, Any]:
    return yaml.safe_load((CATALOG_DIR / "qwen3-4b.yaml").read_text())


def test_an_alias_naming_two_templates_is_refused() -> None:
    first = _template_document()
    second = copy.deepcopy(first)
    second["metadata"]["name"] = "qwen3-4b-copy"
    with pytest.raises(InvalidResourceError, match="already names template qwen3-4b"):
        parse_templates([("a.yaml", first), ("b.yaml", second)])


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda s: s["limits"].update(minLearningRate=1.0, maxLearningRate=0.1), "limits.minLearningRate", "exceed"),
        (lambda s: s["limits"].pop("fullTraining") and s["limits"].pop("loraTraining"), "limits", "offer a method"),
        (lambda s: s["limits"]["loraTraining"].update(minBatchSize=512), "limits.loraTraining.minBatchSize", "exceed"),
        (
            lambda s: s.update(training={"hyperparameters": {"learningRate": 0.5}}),
            "training.hyperparameters.learningRate",
            "within limits",
        ),
        (lambda s: s.update(training={"hyperparameters": {"nEpochs": 50}}), "training.hyperparameters.nEpochs", "20"),
        (lambda s: s.update(training={"lora": {"r": 128}}), "training.lora.r", "maxRank (64)"),
        (lambda s: s["resources"].update(cpu="lots"), "resources.cpu", "Kubernetes quantity"),
        (lambda s: s["architecture"].update(modelTypes=[]), "architecture.modelTypes", "at least 1 item"),
        (lambda s: s.update(transformersCeiling="latest"), "transformersCeiling", "version such as 5.23.0"),
    ],
)
def test_an_incoherent_template_is_refused_at_the_field(change: Any, field: str, words: str) -> None:
    document = _template_document()
    change(document["spec"])
    with pytest.raises(InvalidResourceError) as caught:
        parse_templates([("qwen3-4b.yaml", document)])
    (error,) = caught.value.errors
    assert error.path == f"qwen3-4b.yaml: spec.{field}"
    assert words in error.message
