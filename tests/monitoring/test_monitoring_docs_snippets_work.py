"""The configuration docs/monitoring.md gives users works as written.

- The Prometheus Operator values file renders the ServiceMonitor, PodMonitor, PrometheusRule and
  dashboard ConfigMap, each with the label a kube-prometheus-stack Prometheus selects.
- The plain Prometheus scrape config (with the chart's rules file beside it) passes
  `promtool check config`, and its job names are the ones the alerts and the dashboard read.
- Its trainer relabelings are those of the chart's PodMonitor, so both give the same labels.
  (The live test runs this config in a real Prometheus: test_dashboard_panels_return_data_...)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from ..deploy.chart import ALL_ON, of_kind, render
from .documented_config import documented_prometheus_config, with_discovery, yaml_block
from .promtool import ALERTS_FILE, promtool


def test_the_prometheus_operator_values_render_every_monitoring_object() -> None:
    values = yaml.safe_load(yaml_block("# values-monitoring.yaml"))
    objects = render(values)
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        (obj,) = of_kind(objects, kind)
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack", kind
    (dashboard,) = [c for c in of_kind(objects, "ConfigMap") if "kubetune.json" in c.get("data", {})]
    assert dashboard["metadata"]["namespace"] == "monitoring"


def test_the_plain_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    config = documented_prometheus_config()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"kubetune-operator", "kubetune-trainer"}, "the names the alerts and dashboard read"
    # Debian's promtool knows no kubernetes_sd_configs: check the rest with file discovery instead.
    config["scrape_configs"] = [with_discovery(job, targets_file=tmp_path / "targets.json") for job in jobs.values()]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    shutil.copy(ALERTS_FILE, tmp_path / "kubetune-alerts.yaml")

    checked = promtool("check", "config", tmp_path / "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout


def test_the_documented_trainer_relabelings_are_the_pod_monitors() -> None:
    """The plain config and the chart's PodMonitor give trainer series the same labels."""
    (monitor,) = of_kind(render(ALL_ON), "PodMonitor")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (trainer,) = [j for j in documented_prometheus_config()["scrape_configs"] if j["job_name"] == "kubetune-trainer"]
    documented = [(r.get("source_labels"), r.get("target_label"), r.get("regex")) for r in trainer["relabel_configs"]]
    for relabel in endpoint["relabelings"]:
        if relabel.get("targetLabel") == "job":
            assert relabel["replacement"] == trainer["job_name"]
            continue
        assert (relabel.get("sourceLabels"), relabel.get("targetLabel"), relabel.get("regex")) in documented, relabel
