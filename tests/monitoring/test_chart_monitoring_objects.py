"""The chart's monitoring objects: gated, one source each, and pointed at what really serves metrics.

- The PrometheusRule's groups are files/prometheus/alerts.yaml, unchanged: promtool checks and
  unit-tests the rules as rendered too.
- The dashboard ConfigMap holds files/grafana/kubetune.json, unchanged, with the sidecar's label.
- The ServiceMonitor selects the metrics Service, whose `metrics` port reaches the operator's.
- The PodMonitor selects the trainer pods the deployed operator renders (its settings read from
  the Deployment's environment, as the operator reads them) and scrapes their `metrics` port.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from kubetune_operator.render import JobRef, render_attempt
from kubetune_operator.settings import OperatorSettings

from ..deploy.chart import ALL_ON, NAMESPACE, RELEASE, of_kind, render
from ..operator.core_builders import JOB, resolved, spec
from .dashboard import DASHBOARD_FILE
from .promtool import ALERTS_FILE, promtool, write_unit_tests

MONITORING_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")


def _only(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (obj,) = objects
    return obj


def _selected(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def test_every_monitoring_object_is_off_by_default() -> None:
    objects = render({})
    for kind in MONITORING_KINDS:
        assert of_kind(objects, kind) == [], kind
    assert [c for c in of_kind(objects, "ConfigMap") if "kubetune.json" in c.get("data", {})] == []


def test_the_prometheus_rule_is_the_rules_file_and_passes_promtool(tmp_path: Path) -> None:
    rule = _only(of_kind(render(ALL_ON), "PrometheusRule"))
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["spec"] == yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8"))

    extracted = tmp_path / "rendered-rules.yaml"
    extracted.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
    checked = promtool("check", "rules", extracted)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", write_unit_tests(extracted, into=tmp_path))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_dashboard_configmap_is_the_dashboard_file_with_the_sidecar_label() -> None:
    (config_map,) = [c for c in of_kind(render(ALL_ON), "ConfigMap") if "kubetune.json" in c.get("data", {})]
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["kubetune.json"]) == json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))

    values = {**ALL_ON, "grafana": {"dashboard": {"enabled": True, "labels": {"dashboards": "ml"}}}}
    (config_map,) = [c for c in of_kind(render(values), "ConfigMap") if "kubetune.json" in c.get("data", {})]
    assert config_map["metadata"]["namespace"] == NAMESPACE, "empty namespace: the release's"
    assert config_map["metadata"]["labels"]["dashboards"] == "ml"


def test_the_service_monitor_scrapes_the_operators_metrics_port() -> None:
    objects = render(ALL_ON)
    monitor = _only(of_kind(objects, "ServiceMonitor"))
    (endpoint,) = monitor["spec"]["endpoints"]
    selected = [
        s for s in of_kind(objects, "Service") if _selected(monitor["spec"]["selector"], s["metadata"]["labels"])
    ]
    # Only the metrics Service: the webhook's Service shares the operator's labels (ALL_ON has both).
    assert [s["metadata"]["name"] for s in selected] == [f"{RELEASE}-metrics"]
    (service,) = selected
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    deployment = _only(of_kind(objects, "Deployment"))
    pod = deployment["spec"]["template"]
    assert all(pod["metadata"]["labels"].get(k) == v for k, v in service["spec"]["selector"].items())
    (container,) = pod["spec"]["containers"]
    (served,) = [p for p in container["ports"] if p["name"] == port["targetPort"]]
    args = container["args"]
    assert args[args.index("--metrics-port") + 1] == str(served["containerPort"])
    # The alert and the dashboard look for job="kubetune-operator", whatever the release is named.
    assert {"action": "replace", "targetLabel": "job", "replacement": "kubetune-operator"} in endpoint["relabelings"]


@pytest.mark.parametrize("namespaces", [[], ["ml", "research"]])
def test_the_pod_monitor_scrapes_rank_0_of_the_trainer_pods_the_operator_renders(namespaces: list[str]) -> None:
    objects = render(
        {**ALL_ON, "watchNamespaces": namespaces, "settings": {**ALL_ON["settings"], "trainerMetricsPort": 9500}}
    )
    monitor = _only(of_kind(objects, "PodMonitor"))
    (container,) = _only(of_kind(objects, "Deployment"))["spec"]["template"]["spec"]["containers"]
    environ = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    settings = OperatorSettings.from_env(environ)

    job = JobRef(namespace="ml", name=JOB.name, uid=JOB.uid)
    trainer = _only(
        [o for o in render_attempt(resolved(spec()), job=job, attempt=1, settings=settings) if o["kind"] == "Job"]
    )
    pod = trainer["spec"]["template"]
    assert _selected(monitor["spec"]["selector"], pod["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (port,) = [p for p in pod["spec"]["containers"][0]["ports"] if p["name"] == endpoint["port"]]
    assert port["containerPort"] == 9500
    assert monitor["spec"]["namespaceSelector"] == ({"matchNames": namespaces} if namespaces else {"any": True})

    relabel = {r["targetLabel"]: r for r in endpoint["relabelings"] if "targetLabel" in r}
    # The dashboard's FineTuneJob variable and the heartbeat alert's summary read `finetunejob`.
    assert relabel["finetunejob"]["sourceLabels"] == ["__meta_kubernetes_pod_label_kubetune_dev_job"]
    assert relabel["job"]["replacement"] == "kubetune-trainer"
    (keep,) = [r for r in endpoint["relabelings"] if r["action"] == "keep"]
    assert keep == {
        "action": "keep",
        "sourceLabels": ["__meta_kubernetes_pod_annotation_batch_kubernetes_io_job_completion_index"],
        "regex": "0",
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"metrics": {"serviceMonitor": {"enabled": True}, "service": {"enabled": False}}},
            "metrics.serviceMonitor.enabled needs metrics.service.enabled",
        ),
        (
            {"metrics": {"podMonitor": {"enabled": True}}, "settings": {"trainerMetricsPort": 0}},
            "metrics.podMonitor.enabled needs settings.trainerMetricsPort",
        ),
    ],
)
def test_a_monitor_without_anything_to_scrape_is_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render(values)
