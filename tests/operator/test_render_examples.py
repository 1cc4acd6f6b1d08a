"""Every example FineTuneJob resolves against the shipped catalog and renders valid, restricted manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from kubetune_operator.api.resources import BaseModelTemplate
from kubetune_operator.api.spec import FineTuneJobSpec
from kubetune_operator.render import JobRef, render_attempt, render_preflight
from kubetune_operator.render.serving import render_serving
from kubetune_operator.resolve.resolution import Unresolved, parse_spec, resolve_job
from kubetune_trainer.contract import ModelFacts

from ..conftest import EXAMPLES_DIR
from .core_builders import CATALOG, SETTINGS
from .kserve_sdk_schema import validate as kserve_problems
from .pod_security import pod_spec_of, restricted_violations

SMOLLM2_FACTS = ModelFacts(
    model_type="llama", architectures=["LlamaForCausalLM"], parameters=134_515_008, max_positions=8192
)


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(Path(EXAMPLES_DIR).glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                found.append((path.name, document))
    return found


DOCUMENTS = _documents()
TEMPLATES = (*CATALOG, *(BaseModelTemplate.parse(d) for _, d in DOCUMENTS if d["kind"] == "BaseModelTemplate"))
JOBS = [(name, d) for name, d in DOCUMENTS if d["kind"] == "FineTuneJob"]


@pytest.mark.parametrize(("file_name", "manifest"), JOBS, ids=[name for name, _ in JOBS])
def test_example_resolves_and_renders(file_name: str, manifest: dict[str, Any]) -> None:
    spec = parse_spec(manifest["spec"])
    assert isinstance(spec, FineTuneJobSpec), spec
    name = manifest["metadata"]["name"]
    owner = JobRef(namespace=manifest["metadata"].get("namespace", "default"), name=name, uid="example-uid")
    rendered: list[dict[str, Any]] = []
    outcome = resolve_job(spec, job_name=name, namespace=owner.namespace, templates=TEMPLATES, settings=SETTINGS)
    if outcome.problem == Unresolved.AWAITING_MODEL_FACTS:  # model: auto -> the preflight's facts decide
        assert outcome.preflight_job is not None
        rendered += render_preflight(outcome.preflight_job, job=owner, settings=SETTINGS)
        outcome = resolve_job(
            spec, job_name=name, namespace=owner.namespace, templates=TEMPLATES, settings=SETTINGS, facts=SMOLLM2_FACTS
        )
    assert outcome.job is not None, outcome.message
    rendered += render_preflight(outcome.job, job=owner, settings=SETTINGS)
    rendered += render_attempt(outcome.job, job=owner, attempt=1, settings=SETTINGS)
    for made in rendered:
        kubernetes_validate.validate(made, "1.33.0", strict=True)
        if made["kind"] == "Job":
            assert restricted_violations(pod_spec_of(made)) == []
    if spec.serve is not None:  # what the operator creates once the job Succeeded
        plan = render_serving(spec.serve, outcome.job, job=owner, parameters=None, settings=SETTINGS)
        for made in plan.manifests:
            if made["kind"] == "InferenceService":
                assert kserve_problems(made) == []
            else:
                kubernetes_validate.validate(made, "1.33.0", strict=True)


def test_an_example_serves_its_model() -> None:
    assert any("serve" in manifest["spec"] for _, manifest in JOBS)
