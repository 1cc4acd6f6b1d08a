"""Shared fixtures: the repo's files, the generated CRD schemas, the template catalog."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import settings

from kubetune_operator.resolve.catalog import Catalog, load_catalog

from .tiers import mark_tiers

# CI replays the same examples every run (no flaky red); local runs keep exploring.
# HYPOTHESIS_PROFILE=soak runs the schema/model agreement property far longer.
settings.register_profile("dev", max_examples=300)
settings.register_profile("ci", max_examples=300, derandomize=True, print_blob=True)
settings.register_profile("soak", max_examples=5000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test gets its tier (unit, integration or e2e) and, for the slow modules, `slow`: tests/tiers.py."""
    mark_tiers(items)


REPO = Path(__file__).resolve().parents[1]
CRD_DIR = REPO / "crds"
EXAMPLES_DIR = REPO / "examples"
CATALOG_DIR = REPO / "charts" / "kubetune" / "files" / "templates"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def crd_schema(file_name: str) -> dict[str, Any]:
    crd = load_yaml(CRD_DIR / file_name)
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _reject_unknown_fields(node: dict[str, Any], *, path: tuple[str, ...] = ()) -> dict[str, Any]:
    """Emulate `kubectl`'s strict field validation: unknown fields are errors, not pruned.

    The root's `metadata` is left open: the API server owns its other fields.
    """
    node = dict(node)
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields") and path != ("metadata",):
        node["additionalProperties"] = False
    if "properties" in node:
        node["properties"] = {
            name: _reject_unknown_fields(child, path=(*path, name)) for name, child in node["properties"].items()
        }
    if isinstance(node.get("items"), dict):
        node["items"] = _reject_unknown_fields(node["items"], path=(*path, "[]"))
    return node


class CrdValidator:
    """jsonschema over a CRD's openAPIV3Schema, as the API server would check a create.

    What it emulates: types, enums, bounds, patterns, required fields, unknown fields
    rejected (strict field validation), and the API server's own "metadata.name is
    required". What it cannot: CEL rules (tested with cel-python elsewhere), defaulting,
    and int-or-string beyond the anyOf it carries.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._validator = jsonschema.Draft4Validator(_reject_unknown_fields(schema))

    def error_paths(self, document: Any) -> set[tuple[str | int, ...]]:
        paths: set[tuple[str | int, ...]] = set()
        for error in self._validator.iter_errors(document):
            path = tuple(error.absolute_path)
            if error.validator in {"required", "additionalProperties"}:
                path = (*path, error.message.split("'")[1])
            paths.add(path)
        metadata = document.get("metadata") if isinstance(document, dict) else None
        if isinstance(metadata, dict) and "name" not in metadata:
            paths.add(("metadata", "name"))  # the API server requires a name (we never use generateName)
        return paths

    def errors(self, document: Any) -> list[str]:
        return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in self._validator.iter_errors(document)]


@pytest.fixture(scope="session")
def finetunejob_schema() -> CrdValidator:
    return CrdValidator(crd_schema("finetunejobs.yaml"))


@pytest.fixture(scope="session")
def template_schema() -> CrdValidator:
    return CrdValidator(crd_schema("basemodeltemplates.yaml"))


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog(CATALOG_DIR)


VALID_JOB: dict[str, Any] = {
    "apiVersion": "kubetune.dev/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "smollm-chat", "namespace": "ml"},
    "spec": {
        "model": "togethercomputer/llama-2-7b-chat",
        "fromHfModel": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "hfModelRevision": "main",
        "hfTokenSecretRef": {"name": "hf-token", "key": "token"},
        "trainingFile": "pvc://datasets/chat/train.jsonl",
        "validationFile": "pvc://datasets/chat/valid.jsonl",
        "hyperparameters": {
            "nEpochs": 2,
            "learningRate": 1e-4,
            "batchSize": 16,
            "lrScheduler": {"type": "cosine", "minLrRatio": 0.1, "numCycles": 0.5},
            "warmupRatio": 0.05,
            "maxGradNorm": 1.0,
            "weightDecay": 0.01,
            "nCheckpoints": 2,
            "nEvals": 4,
            "trainOnInputs": "auto",
            "maxSeqLength": 2048,
            "packing": True,
            "seed": 7,
        },
        "lora": {"enabled": True, "r": 16, "alpha": 32, "dropout": 0.05, "targetModules": ["all-linear"]},
        "suffix": "support-bot",
        "wandb": {"apiKeySecretRef": {"name": "wandb", "key": "api-key"}, "project": "kubetune"},
        "output": {"uri": "pvc://models/smollm-chat"},
        "checkpoint": {"uri": "pvc://checkpoints/smollm-chat"},
        "maxRetries": 2,
        "queueName": "gpu-queue",
        "priorityClassName": "training",
    },
}


@pytest.fixture
def valid_job() -> dict[str, Any]:
    return copy.deepcopy(VALID_JOB)
