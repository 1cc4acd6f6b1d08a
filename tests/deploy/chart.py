"""Render charts/kubetune with the real Helm SDK (helm-python-sdk) and read back what it renders."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import helm_python as helm
import yaml

from ..conftest import REPO

CHART_DIR = REPO / "charts" / "kubetune"
RELEASE = "kubetune"
NAMESPACE = "kubetune"
WATCHED = ("ml", "research")

# Every optional feature on: HA peering, webhook, monitoring objects, dashboard, all settings.
ALL_ON: dict[str, Any] = {
    "replicas": 3,
    "webhook": {"enabled": True, "failurePolicy": "Ignore"},
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "podMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
    },
    "grafana": {"dashboard": {"enabled": True, "namespace": "monitoring"}},
    "settings": {"defaultCheckpointUri": "s3://kubetune-checkpoints", "cacheClaim": "hf-cache"},
    "verbose": True,
    "podAnnotations": {"example.com/team": "ml"},
    "podLabels": {"example.com/team": "ml"},
    "imagePullSecrets": [{"name": "regcred"}],
    "priorityClassName": "system-cluster-critical",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
}
NAMESPACED = {**ALL_ON, "watchNamespaces": list(WATCHED)}
# The value sets every chart test runs over, by name.
VARIANTS: dict[str, dict[str, Any]] = {"defaults": {}, "all-on": ALL_ON, "all-on-namespaced": NAMESPACED}


@dataclass(frozen=True)
class Rendered:
    """One object the chart renders, with the template it came from."""

    template: str
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


def render_files(
    values: dict[str, Any], *, name: str = RELEASE, namespace: str = NAMESPACE, upgrade: bool = False
) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would print it (values schema enforced)."""
    with helm.Chart.load(str(CHART_DIR)) as chart:
        files: dict[str, str] = chart.render(
            values, name=name, namespace=namespace, is_install=not upgrade, is_upgrade=upgrade
        )
    return files


def render(values: dict[str, Any]) -> list[Rendered]:
    """Every object the chart renders with these values (NOTES.txt aside)."""
    return [
        Rendered(template, obj)
        for template, text in render_files(values).items()
        if not template.endswith("NOTES.txt")
        for obj in yaml.safe_load_all(text)
        if obj
    ]


def of_kind(objects: list[Rendered], kind: str) -> list[dict[str, Any]]:
    return [r.obj for r in objects if r.kind == kind]


def operator_container(objects: list[Rendered]) -> dict[str, Any]:
    (deployment,) = of_kind(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def validation_errors(values: dict[str, Any]) -> str:
    """What Helm says about these values ('' when they pass values.schema.json)."""
    with helm.Chart.load(str(CHART_DIR)) as chart:
        try:
            chart.validate_schema(values)
        except helm.HelmValuesError as error:
            return str(error)
    return ""


def walk(node: Any) -> Iterator[Any]:
    """Every node of a nested dict/list tree."""
    yield node
    if isinstance(node, dict):
        for child in node.values():
            yield from walk(child)
    elif isinstance(node, list):
        for child in node:
            yield from walk(child)
