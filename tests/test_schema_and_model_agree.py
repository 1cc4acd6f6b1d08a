"""Property: for any manifest, the CRD schema and the pydantic model find the same bad fields.

The table test shows chosen cases; this one lets hypothesis mutate a valid FineTuneJob at
random (wrong types, bounds, patterns, missing fields, unknown fields) and checks that the
schema the API server enforces and the model the operator uses never disagree. Cross-field
rules are CEL on the server side and are compared separately (test_crds_are_generated_from_models).
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kubetune_operator.api.errors import InvalidResourceError, validate
from kubetune_operator.api.resources import FineTuneJob

from .conftest import VALID_JOB, CrdValidator

DELETE = "<delete>"


def leaf_paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(node, dict):
        paths = [prefix] if prefix else []
        for key, value in node.items():
            paths.extend(leaf_paths(value, (*prefix, key)))
        return paths
    return [prefix]


# metadata is the API server's own (ObjectMeta); only its name carries kubetune's rule.
PATHS = [p for p in leaf_paths(VALID_JOB) if p[0] == "spec" and len(p) > 1] + [
    ("metadata", "name"),
    ("spec", "unknownField"),
    ("spec", "hyperparameters", "learning_rate"),
    ("spec", "lora", "merge"),
    ("spec", "suspend"),
    ("spec", "activeDeadlineSeconds"),
    ("spec", "ttlSecondsAfterFinished"),
    ("spec", "fromCheckpoint"),
]

# No newlines: Python's `$` matches before a final newline, Go's and Rust's do not, and only
# jsonschema here uses Python's. Everything else a YAML author can type is fair game.
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
VALUES = st.one_of(
    st.integers(min_value=-3, max_value=70),
    st.floats(min_value=-2, max_value=2, allow_nan=False),
    st.booleans(),
    TEXT,
    st.sampled_from(
        ["max", "auto", "cosine", "linear", "sft", "main", "a", "pvc://c/p", "s3://b/k", "hf://o/r", "ftp://x", ""]
    ),
    st.sampled_from(["hf://datasets/o/n/f.jsonl", "job-1:30", "gpu-queue", "UPPER", "a/b", "a" * 64]),
    st.lists(st.sampled_from(["all-linear", "q_proj", ""]), max_size=2),
    st.just({}),
    st.just(DELETE),
)


def mutate(document: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    parent: Any = document
    for key in path[:-1]:
        if not isinstance(parent.get(key), dict):
            parent[key] = {}
        parent = parent[key]
    if value == DELETE:
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = copy.deepcopy(value)  # hypothesis may hand out one object twice


def model_error_paths(document: dict[str, Any]) -> set[tuple[str | int, ...]]:
    try:
        validate(FineTuneJob, document, kind="FineTuneJob")
    except InvalidResourceError as invalid:
        return {e.loc for e in invalid.errors}
    return set()


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.tuples(st.sampled_from(PATHS), VALUES), min_size=1, max_size=3))
def test_schema_and_model_reject_the_same_fields(
    finetunejob_schema: CrdValidator, changes: list[tuple[tuple[str, ...], Any]]
) -> None:
    document = copy.deepcopy(VALID_JOB)
    for path, value in changes:
        mutate(document, path, value)
    # Cross-field rules live in CEL on the server: keep them satisfied so both sides compare.
    spec = document.get("spec", {})
    if isinstance(spec, dict):
        if "fromHfModel" in spec:
            spec.pop("fromCheckpoint", None)
        hyper = spec.get("hyperparameters")
        if isinstance(hyper, dict) and "validationFile" not in spec:
            hyper.pop("nEvals", None)
        if spec.get("model") == "auto" and "fromHfModel" not in spec:
            spec["model"] = "qwen3-4b"

    schema_paths = finetunejob_schema.error_paths(document)
    model_paths = model_error_paths(document)

    event("rejected" if model_paths else "accepted")
    assert schema_paths == model_paths
