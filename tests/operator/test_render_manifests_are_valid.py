"""Every rendered manifest is a valid Kubernetes object (1.30 and 1.33, strict) and every pod is restricted."""

from __future__ import annotations

from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from kubetune_operator.render import render_attempt, render_preflight

from .core_builders import JOB, SETTINGS, resolved, spec
from .pod_security import pod_spec_of, restricted_violations

VARIANTS: dict[str, dict[str, Any]] = {
    "single-node-lora": {},
    "multi-node-full": {"model": "meta-llama/Meta-Llama-3.1-70B-Instruct-Reference", "lora": {"enabled": False}},
    "secrets-queue-priority": {
        "hfTokenSecretRef": {"name": "hf-token", "key": "token"},
        "wandb": {"apiKeySecretRef": {"name": "wandb", "key": "api-key"}, "project": "p"},
        "queueName": "gpu-queue",
        "priorityClassName": "training-high",
    },
    "pvc-everywhere": {
        "trainingFile": "pvc://datasets/support/train.jsonl",
        "output": {"uri": "pvc://models/support"},
        "checkpoint": {"uri": "pvc://checkpoints/support"},
    },
}


def _all_manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for variant, fields in VARIANTS.items():
        job = resolved(spec(**fields))
        for attempt in (1, 2):
            for manifest in render_attempt(job, job=JOB, attempt=attempt, settings=SETTINGS, resume_from=None):
                found.append((f"{variant}/a{attempt}/{manifest['kind']}", manifest))
        for manifest in render_preflight(job, job=JOB, settings=SETTINGS):
            found.append((f"{variant}/preflight/{manifest['kind']}", manifest))
    return found


MANIFESTS = _all_manifests()


@pytest.mark.parametrize("kube_version", ["1.30.0", "1.33.0"])
@pytest.mark.parametrize(("label", "manifest"), MANIFESTS, ids=[label for label, _ in MANIFESTS])
def test_manifest_passes_kubernetes_validate_strict(label: str, manifest: dict[str, Any], kube_version: str) -> None:
    kubernetes_validate.validate(manifest, kube_version, strict=True)


@pytest.mark.parametrize(
    ("label", "manifest"),
    [(label, m) for label, m in MANIFESTS if m["kind"] == "Job"],
    ids=[label for label, m in MANIFESTS if m["kind"] == "Job"],
)
def test_every_pod_spec_meets_the_restricted_profile(label: str, manifest: dict[str, Any]) -> None:
    assert restricted_violations(pod_spec_of(manifest)) == []


def test_every_rendered_kind_is_covered() -> None:
    kinds = {m["kind"] for _, m in MANIFESTS}
    assert kinds == {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Service", "Job"}
