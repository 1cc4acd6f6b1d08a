"""The CRDs in crds/ are generated from the pydantic models and never drift from them."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml

from kubetune_operator.api import crdgen
from kubetune_operator.api.errors import InvalidResourceError, validate
from kubetune_operator.api.spec import FineTuneJobSpec
from kubetune_operator.api.template import BaseModelTemplateSpec

from .conftest import CRD_DIR, VALID_JOB, crd_schema, load_yaml


def kubetune(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubetune_operator.cli", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_committed_crds_match_the_models() -> None:
    done = kubetune("crds", "--check", cwd=CRD_DIR.parent)
    assert done.returncode == 0, done.stderr
    assert "crds/finetunejobs.yaml: up to date" in done.stdout


def test_check_fails_and_shows_the_diff_when_a_file_drifted(tmp_path: Path) -> None:
    shutil.copytree(CRD_DIR, tmp_path / "crds")
    edited = tmp_path / "crds" / "finetunejobs.yaml"
    hand_edit = edited.read_text().replace("maxLength: 40\n", "maxLength: 41\n")
    assert hand_edit != edited.read_text()
    edited.write_text(hand_edit)

    done = kubetune("crds", "--check", cwd=tmp_path)

    assert done.returncode == 1
    assert any(line.startswith("-") and line.strip("- ") == "maxLength: 41" for line in done.stderr.splitlines())
    assert any(line.startswith("+") and line.strip("+ ") == "maxLength: 40" for line in done.stderr.splitlines())
    assert "run `kubetune crds`" in done.stderr
    assert edited.read_text() == hand_edit, "--check writes nothing"


def test_crds_writes_the_files(tmp_path: Path) -> None:
    done = kubetune("crds", "--out", "generated", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ("finetunejobs.yaml", "basemodeltemplates.yaml"):
        assert (tmp_path / "generated" / name).read_text() == (CRD_DIR / name).read_text()


def schema_nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_nodes(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("crd_file", ["finetunejobs.yaml", "basemodeltemplates.yaml"])
def test_schema_is_structural_and_documented(crd_file: str) -> None:
    for path, node in schema_nodes(crd_schema(crd_file)):
        assert not {"$ref", "allOf", "oneOf", "nullable"} & set(node), path
        typed = (
            "type" in node or node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        )
        assert typed, f"{path} has no type"
        if "anyOf" in node:
            assert node["x-kubernetes-int-or-string"] is True, path
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        assert node.get("additionalProperties") is not False, path
        if "default" in node:
            assert not list(jsonschema.Draft4Validator(node).iter_errors(node["default"])), f"{path} default"
        is_field = path.count(".") >= 1 and not path.endswith("[]") and not path.endswith("{}")
        if is_field and not path.startswith(".metadata"):
            assert node.get("description"), f"{path} has no description"


@pytest.mark.parametrize("crd_file", ["finetunejobs.yaml", "basemodeltemplates.yaml"])
def test_metadata_is_restricted_only_in_the_ways_the_api_server_allows(crd_file: str) -> None:
    root = crd_schema(crd_file)
    metadata = root["properties"]["metadata"]
    assert metadata["type"] == "object"
    assert set(metadata.get("properties", {})) <= {"name", "generateName"}
    assert set(metadata) <= {"type", "properties"}
    for path, node in schema_nodes(root["properties"]["spec"]):
        assert "metadata" not in node.get("properties", {}), path


@pytest.mark.parametrize("crd_file", ["finetunejobs.yaml", "basemodeltemplates.yaml"])
@pytest.mark.parametrize("kube_version", ["1.30.0", "1.33.0"])
def test_crds_are_valid_kubernetes_objects(crd_file: str, kube_version: str) -> None:
    kubernetes_validate.validate(load_yaml(CRD_DIR / crd_file), kube_version, strict=True)


def test_every_model_field_is_in_the_schema_and_nothing_else() -> None:
    for model, schema in (
        (FineTuneJobSpec, crd_schema("finetunejobs.yaml")["properties"]["spec"]),
        (BaseModelTemplateSpec, crd_schema("basemodeltemplates.yaml")["properties"]["spec"]),
    ):
        aliases = {field.alias or name for name, field in model.model_fields.items()}
        assert set(schema["properties"]) == aliases


def test_names_printer_columns_and_subresources() -> None:
    job = load_yaml(CRD_DIR / "finetunejobs.yaml")
    template = load_yaml(CRD_DIR / "basemodeltemplates.yaml")
    assert job["metadata"]["name"] == "finetunejobs.kubetune.dev"
    assert job["spec"]["names"]["shortNames"] == ["ftj"]
    assert template["spec"]["names"]["shortNames"] == ["bmt"]
    assert job["spec"]["scope"] == "Namespaced"
    assert template["spec"]["scope"] == "Cluster"
    (version,) = job["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    default_columns = [c["name"].upper() for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert default_columns == ["PHASE", "STAGE", "PROGRESS", "MODEL", "ERROR", "AGE"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for column in version["additionalPrinterColumns"]:
        top, *rest = column["jsonPath"].strip(".").split(".")
        if top == "status":
            node = status[rest[0]]
            for key in rest[1:]:
                node = node["properties"][key]
            assert node["type"] == column["type"], column


class CelRule:
    def __init__(self, rule: dict[str, Any]) -> None:
        self.rule = rule
        environment = celpy.Environment()
        self.program = environment.program(environment.compile(rule["rule"]))

    def allows(self, new: Any, old: Any | None = None) -> bool:
        activation = {"self": celpy.json_to_cel(new)}
        if old is not None:
            activation["oldSelf"] = celpy.json_to_cel(old)
        return bool(self.program.evaluate(activation))


@pytest.fixture(scope="module")
def spec_rules() -> list[CelRule]:
    return [CelRule(rule) for rule in crd_schema("finetunejobs.yaml")["properties"]["spec"]["x-kubernetes-validations"]]


def _update(change: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    old = copy.deepcopy(VALID_JOB["spec"])
    new = copy.deepcopy(old)
    change(new)
    return old, new


def test_spec_is_immutable_except_suspend(spec_rules: list[CelRule]) -> None:
    immutability = spec_rules[0]
    assert "oldSelf" in immutability.rule["rule"]
    assert "spec.suspend" in immutability.rule["message"]

    old, new = _update(lambda s: s.update(suspend=True))
    assert immutability.allows(new, old), "suspend may change"
    old, new = _update(lambda s: s.pop("suspend", None))
    assert immutability.allows(new, old)

    for change in (
        lambda s: s.update(model="auto"),
        lambda s: s["hyperparameters"].update(learningRate=3e-4),
        lambda s: s["lora"].update(r=8),
        lambda s: s.update(activeDeadlineSeconds=3600),
        lambda s: s.pop("suffix"),
        lambda s: s.update(maxRetries=5),
    ):
        old, new = _update(change)
        assert not immutability.allows(new, old)


@pytest.mark.parametrize(
    "spec_change",
    [
        pytest.param({}, id="valid"),
        pytest.param({"model": "auto"}, id="auto-with-hf-model"),
        pytest.param({"model": "auto", "fromHfModel": None}, id="auto-without-hf-model"),
        pytest.param({"fromCheckpoint": "earlier-job:40"}, id="checkpoint-and-hf-model"),
        pytest.param({"fromCheckpoint": "earlier-job", "fromHfModel": None}, id="checkpoint-alone"),
        pytest.param({"validationFile": None}, id="evals-without-validation-file"),
        pytest.param({"validationFile": None, "hyperparameters": {"nEvals": 0}}, id="no-evals-no-file"),
        pytest.param({"validationFile": None, "hyperparameters": {}}, id="default-evals-no-file"),
        pytest.param({"trainingFile": "s3://AKIAKEY:secret@bucket/train.jsonl"}, id="credentials-in-training-file"),
        pytest.param({"validationFile": "https://user:pw@example.com/v.jsonl"}, id="credentials-in-validation-file"),
        pytest.param({"output": {"uri": "s3://key:secret@bucket/out"}}, id="credentials-in-output"),
        pytest.param({"checkpoint": {"uri": "s3://key@bucket/ckpt"}}, id="credentials-in-checkpoint"),
        pytest.param({"trainingFile": "s3://bucket/user@example.com/train.jsonl"}, id="at-sign-in-a-key-is-fine"),
    ],
)
def test_cel_cross_field_rules_agree_with_the_model(spec_rules: list[CelRule], spec_change: dict[str, Any]) -> None:
    spec = copy.deepcopy(VALID_JOB["spec"])
    for key, value in spec_change.items():
        if value is None:
            spec.pop(key)
        else:
            spec[key] = value
    cel_field_paths = {rule.rule["fieldPath"] for rule in spec_rules[1:] if not rule.allows(spec)}

    try:
        validate(FineTuneJobSpec, spec, kind="FineTuneJobSpec")
        model_paths: set[str] = set()
    except InvalidResourceError as invalid:
        model_paths = {"." + ".".join(map(str, error.loc)) for error in invalid.errors}

    assert cel_field_paths == model_paths


def test_generation_is_deterministic() -> None:
    assert crdgen.rendered_files() == crdgen.rendered_files()
    for name, text in crdgen.rendered_files().items():
        assert yaml.safe_load(text) == load_yaml(CRD_DIR / name)


def test_spec_values_are_bounded_so_cel_cost_is_bounded() -> None:
    """The API server estimates a CEL rule's cost from maxLength/maxItems; unbounded strings or
    lists in the spec would make the immutability rule's comparisons too expensive to admit."""
    unbounded = []
    spec = crd_schema("finetunejobs.yaml")["properties"]["spec"]
    for path, node in schema_nodes(spec):
        if node.get("type") == "string" and "maxLength" not in node and "enum" not in node:
            unbounded.append(path)
        if node.get("type") == "array" and "maxItems" not in node:
            unbounded.append(path)
        if node.get("x-kubernetes-int-or-string") and "maxLength" not in node:
            unbounded.append(path)
    assert unbounded == []


def test_cancel_may_be_set_after_creation_but_never_undone(spec_rules: list[CelRule]) -> None:
    immutability = spec_rules[0]
    old, new = _update(lambda s: s.update(cancel=True))
    assert immutability.allows(new, old), "cancel may be set on a running job"
    cancelled = {**old, "cancel": True}
    assert not immutability.allows({**cancelled, "cancel": False}, cancelled), "a cancel cannot be undone"
    assert not immutability.allows({k: v for k, v in cancelled.items() if k != "cancel"}, cancelled)
    assert immutability.allows(cancelled, cancelled)


def test_credentials_in_a_uri_are_never_echoed() -> None:
    spec = {**copy.deepcopy(VALID_JOB["spec"]), "trainingFile": "s3://AKIAKEY:SeCrEt@bucket/train.jsonl"}
    with pytest.raises(InvalidResourceError) as refused:
        validate(FineTuneJobSpec, spec, kind="FineTuneJobSpec")
    assert [error.path for error in refused.value.errors] == ["trainingFile"]
    assert "SeCrEt" not in str(refused.value)
    assert "AKIAKEY" not in str(refused.value)
    assert "s3://<redacted>@bucket/train.jsonl" in str(refused.value)
