"""Every rendered object is valid: built-in kinds against Kubernetes' own schemas (strict, two versions),
custom resources against the CRD the chart installs for them (kubernetes-validate passes those silently)."""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from .chart import VARIANTS, Rendered, of_kind, render

KUBERNETES_VERSIONS = ("1.30.0", "1.33.0")
# prometheus-operator's kinds: their CRDs come with prometheus-operator, not with this chart; the
# monitoring tests check what they hold (promtool, a real Prometheus).
EXTERNAL_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
RENDERED = {name: render(values) for name, values in VARIANTS.items()}


def _builtin(objects: list[Rendered]) -> list[Rendered]:
    custom = {_crd_kind(crd) for crd in of_kind(objects, "CustomResourceDefinition")} | EXTERNAL_KINDS
    return [r for r in objects if r.kind not in custom]


def _crd_kind(crd: dict[str, Any]) -> str:
    return str(crd["spec"]["names"]["kind"])


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", RENDERED)
def test_builtin_objects_pass_strict_kubernetes_validation(variant: str, version: str) -> None:
    failures = []
    for rendered in _builtin(RENDERED[variant]):
        try:
            kubernetes_validate.validate(rendered.obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            failures.append(f"{rendered.template} {rendered.kind}/{rendered.name}: {error.message}")
    assert failures == []


@pytest.mark.parametrize("variant", RENDERED)
def test_custom_resources_match_their_crd_schema(variant: str) -> None:
    objects = RENDERED[variant]
    crds = {_crd_kind(crd): crd for crd in of_kind(objects, "CustomResourceDefinition")}
    custom = [r for r in objects if r.kind in crds]
    assert custom, "the catalog at least"
    failures = []
    for rendered in custom:
        crd = crds[rendered.kind]
        (version,) = crd["spec"]["versions"]
        assert rendered.obj["apiVersion"] == f"{crd['spec']['group']}/{version['name']}"
        # OpenAPI v3 structural schemas are closest to JSON-schema draft 4 (boolean exclusiveMinimum)
        validator = jsonschema.Draft4Validator(version["schema"]["openAPIV3Schema"])
        failures += [
            f"{rendered.kind}/{rendered.name} {'.'.join(map(str, e.path))}: {e.message}"
            for e in validator.iter_errors(rendered.obj)
        ]
        assert ("namespace" in rendered.obj["metadata"]) == (crd["spec"]["scope"] == "Namespaced")
    assert failures == []


def test_a_broken_template_would_be_caught() -> None:
    """The checks above see real errors: a catalog entry with a string GPU count is refused."""
    objects = RENDERED["defaults"]
    (crd,) = (c for c in of_kind(objects, "CustomResourceDefinition") if _crd_kind(c) == "BaseModelTemplate")
    template = of_kind(objects, "BaseModelTemplate")[0]
    broken = {**template, "spec": {**template["spec"], "resources": {**template["spec"]["resources"]}}}
    broken["spec"]["resources"]["gpusPerNode"] = "eight"
    validator = jsonschema.Draft4Validator(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    assert any("gpusPerNode" in list(map(str, e.path)) for e in validator.iter_errors(broken))
    (deployment,) = of_kind(objects, "Deployment")
    deployment = {**deployment, "spec": {**deployment["spec"], "replica": 1}}
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_only_prometheus_operator_kinds_go_unvalidated_here() -> None:
    every_kind = {r.kind for objects in RENDERED.values() for r in objects}
    validated = {r.kind for objects in RENDERED.values() for r in _builtin(objects)}
    crd_kinds = {_crd_kind(c) for objects in RENDERED.values() for c in of_kind(objects, "CustomResourceDefinition")}
    assert every_kind - validated - crd_kinds == EXTERNAL_KINDS
