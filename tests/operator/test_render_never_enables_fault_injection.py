"""The trainer's test-only fault hook cannot be switched on through a FineTuneJob or a template.

It is enabled only by the KUBETUNE_FAULT_INJECTION environment variable: no rendered pod carries
it, and the one way a user adds environment variables (spec.pod.env and envFromSecrets, within the
administrator's allow-list) refuses every KUBETUNE_* name, even when the allow-list is `*`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import yaml

from kubetune_operator.render import render_attempt, render_preflight
from kubetune_operator.resolve.resolution import resolve_job
from kubetune_operator.settings import OperatorSettings
from kubetune_trainer.contract import TrainerConfig
from kubetune_trainer.faults import FAULT_INJECTION_ENV

from ..conftest import REPO
from .core_builders import CATALOG, JOB, SETTINGS, resolved, spec

EVERYTHING_SET = {
    "hfTokenSecretRef": {"name": "hf-token", "key": "token"},
    "wandb": {"apiKeySecretRef": {"name": "wandb", "key": "api-key"}, "project": "p"},
    "trainingFile": "pvc://datasets/support/train.jsonl",
    "output": {"uri": "pvc://models/support"},
    "checkpoint": {"uri": "pvc://checkpoints/support"},
}


def _property_names(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        for name, value in (schema.get("properties") or {}).items():
            yield name
            yield from _property_names(value)
        for key, value in schema.items():
            if key != "properties":
                yield from _property_names(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _property_names(item)


def test_no_rendered_manifest_carries_the_fault_variable() -> None:
    job = resolved(spec(**EVERYTHING_SET))
    manifests = [
        *render_attempt(job, job=JOB, attempt=2, settings=SETTINGS, resume_from=None),
        *render_preflight(job, job=JOB, settings=SETTINGS),
    ]
    assert manifests
    for manifest in manifests:
        assert FAULT_INJECTION_ENV not in json.dumps(manifest)


def test_neither_crd_nor_the_trainer_config_has_a_way_to_set_it() -> None:
    for crd in ("finetunejobs.yaml", "basemodeltemplates.yaml"):
        names = {name.lower() for name in _property_names(yaml.safe_load((REPO / "crds" / crd).read_text()))}
        assert names.isdisjoint({"extraenv", "envfrom", "faults", "faultinjection"}), crd
    template = yaml.safe_load((REPO / "crds" / "basemodeltemplates.yaml").read_text())
    assert "env" not in {name.lower() for name in _property_names(template)}
    config_fields = {name.lower() for name in _property_names(TrainerConfig.model_json_schema())}
    assert not {name for name in config_fields if "fault" in name or name in {"env", "environ"}}


def test_spec_pod_env_cannot_set_it_even_when_every_name_is_allowed() -> None:
    everything = OperatorSettings(**{**SETTINGS.model_dump(), "pod_env_allowed": ("*",)})
    for field, entry in (
        ("env", {"name": FAULT_INJECTION_ENV, "value": "stall"}),
        ("envFromSecrets", {"name": FAULT_INJECTION_ENV, "secretKeyRef": {"name": "s", "key": "k"}}),
    ):
        outcome = resolve_job(
            spec(pod={field: [entry]}), job_name=JOB.name, namespace=JOB.namespace, templates=CATALOG,
            settings=everything,
        )  # fmt: skip
        assert outcome.job is None
        assert f"{FAULT_INJECTION_ENV} is set by kubetune itself" in outcome.message
