"""values.schema.json refuses wrong types, unknown keys at every level and bad enums, naming the key."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .chart import ALL_ON, CHART_DIR, NAMESPACED, render, validation_errors

# (values, where Helm must point, words the message must hold)
BAD_VALUES: list[tuple[dict[str, Any], str, str]] = [
    ({"replicas": "2"}, "/replicas", "got string, want integer"),
    ({"replicas": 0}, "/replicas", "minimum"),
    ({"replica": 2}, "''", "additional properties 'replica' not allowed"),
    ({"image": {"tags": "v1"}}, "/image", "additional properties 'tags' not allowed"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy", "value must be one of"),
    ({"crds": {"install": "yes"}}, "/crds/install", "got string, want boolean"),
    ({"crds": {"upgrade": True}}, "/crds", "additional properties 'upgrade' not allowed"),
    ({"templates": {"install": 1}}, "/templates/install", "got number, want boolean"),
    ({"watchNamespaces": "ml"}, "/watchNamespaces", "got string, want array"),
    ({"watchNamespaces": ["ML_team"]}, "/watchNamespaces/0", "does not match pattern"),
    ({"settings": {"trainerImages": "x:1"}}, "/settings", "additional properties 'trainerImages' not allowed"),
    ({"settings": {"retryBackoffSeconds": 0}}, "/settings/retryBackoffSeconds", "exclusiveMinimum"),
    ({"settings": {"runAsUser": 0}}, "/settings/runAsUser", "minimum"),
    ({"settings": {"preflight": "false"}}, "/settings/preflight", "got string, want boolean"),
    ({"resources": {"limits": {"memory": 512}}}, "/resources/limits/memory", "got number, want string"),
    ({"resources": {"limit": {}}}, "/resources", "additional properties 'limit' not allowed"),
    # A misspelt resource name, which the API server would only refuse at install, halfway through.
    (
        {"resources": {"requests": {"memroy": "1Gi"}}},
        "/resources/requests",
        "additional properties 'memroy' not allowed",
    ),
    ({"resources": {"limits": {"gpu": "1"}}}, "/resources/limits", "additional properties 'gpu' not allowed"),
    ({"resources": {"requests": {"cpu": True}}}, "/resources/requests/cpu", "got boolean, want number or string"),
    ({"image": {"tag": 1.0}}, "/image/tag", "got number, want string"),
    # Settings the operator takes as any string, and every job then fails on: the API server refuses
    # the preflight pod's quantity, the trainer has no gs:// writer.
    ({"settings": {"preflightMemory": "4 gigs"}}, "/settings/preflightMemory", "does not match pattern"),
    ({"settings": {"preflightCpu": "one"}}, "/settings/preflightCpu", "does not match pattern"),
    ({"settings": {"defaultOutputUri": "gs://models"}}, "/settings/defaultOutputUri", "does not match pattern"),
    ({"settings": {"defaultCheckpointUri": "/ckpt"}}, "/settings/defaultCheckpointUri", "does not match pattern"),
    ({"settings": {"checkpointGraceSeconds": -1}}, "/settings/checkpointGraceSeconds", "minimum"),
    ({"tolerations": [{"key": "a", "operator": "Equals"}]}, "/tolerations/0/operator", "value must be one of"),
    ({"tolerations": [{"key": "a", "effects": "NoSchedule"}]}, "/tolerations/0", "'effects' not allowed"),
    ({"affinity": {"nodeAffinty": {}}}, "/affinity", "additional properties 'nodeAffinty' not allowed"),
    ({"serviceAccount": {"create": True, "nme": "x"}}, "/serviceAccount", "'nme' not allowed"),
    ({"metrics": {"port": 70000}}, "/metrics/port", "maximum"),
    ({"metrics": {"service": {"enabled": True, "port": 80}}}, "/metrics/service", "'port' not allowed"),
    ({"metrics": {"serviceMonitor": {"interval": "30 seconds"}}}, "/metrics/serviceMonitor/interval", "pattern"),
    ({"metrics": {"podMonitor": {"labels": {"release": 1}}}}, "/metrics/podMonitor/labels/release", "want string"),
    ({"metrics": {"prometheusRule": {"enable": True}}}, "/metrics/prometheusRule", "'enable' not allowed"),
    ({"grafana": {"dashboard": {"enabled": "true"}}}, "/grafana/dashboard/enabled", "want boolean"),
    ({"grafana": {"dashbaord": {}}}, "/grafana", "'dashbaord' not allowed"),
    ({"webhook": {"failurePolicy": "Maybe"}}, "/webhook/failurePolicy", "value must be one of 'Fail', 'Ignore'"),
    ({"webhook": {"timeoutSeconds": 31}}, "/webhook/timeoutSeconds", "maximum"),
    ({"peering": {"name": "Kube Tune"}}, "/peering/name", "does not match pattern"),
]


@pytest.mark.parametrize(("values", "where", "says"), BAD_VALUES, ids=[json.dumps(v) for v, _, _ in BAD_VALUES])
def test_bad_value_is_refused_naming_the_key(values: dict[str, Any], where: str, says: str) -> None:
    errors = validation_errors(values)
    location = "at ''" if where == "''" else f"at '{where}'"
    line = next((line for line in errors.splitlines() if location in line), None)
    assert line is not None, f"no error {location} in: {errors!r}"
    assert says in line


def test_render_enforces_the_schema_too() -> None:
    """`helm install` renders: a typo must fail there, not only in a separate validation step."""
    with pytest.raises(ValueError, match="additional properties 'replica' not allowed"):
        render({"replica": 2})


@pytest.mark.parametrize("values", [{}, ALL_ON, NAMESPACED], ids=["defaults", "all-on", "all-on-namespaced"])
def test_the_documented_value_sets_pass(values: dict[str, Any]) -> None:
    assert validation_errors(values) == ""


def test_resource_quantities_are_taken_as_kubernetes_takes_them() -> None:
    """`cpu: 1` and `cpu: 0.5` are how Kubernetes' own examples write CPUs; extended resources are named by domain."""
    resources = {
        "requests": {"cpu": 0.5, "memory": "256Mi", "ephemeral-storage": "1Gi"},
        "limits": {"cpu": 2, "memory": "1Gi", "hugepages-2Mi": "128Mi", "example.com/fpga": "1"},
    }
    assert validation_errors({"resources": resources}) == ""
    (deployment,) = [r.obj for r in render({"resources": resources}) if r.kind == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"] == resources


def test_settings_take_the_quantities_and_locations_the_operator_can_use() -> None:
    good = {
        "preflightCpu": "500m",
        "preflightMemory": "1.5Gi",
        "defaultOutputUri": "s3://models/kubetune",
        "defaultCheckpointUri": "pvc://checkpoints",
    }
    assert validation_errors({"settings": good}) == ""
    assert validation_errors({"settings": {"preflightCpu": "2", "defaultCheckpointUri": ""}}) == ""


def test_every_object_in_the_schema_forbids_unknown_keys() -> None:
    """additionalProperties false everywhere, except maps of free strings and Kubernetes' own affinity terms."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text(encoding="utf-8"))
    open_objects: list[str] = []

    def visit(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object":
            closed = node.get("additionalProperties") is False
            string_map = node.get("additionalProperties") == {"type": "string"}
            if not (closed or string_map or path.startswith("/affinity/")):
                open_objects.append(path)
        for name, child in node.get("properties", {}).items():
            visit(child, f"{path}/{name}")
        if isinstance(node.get("items"), dict):
            visit(node["items"], f"{path}/0")

    visit(schema, "")
    assert open_objects == []
