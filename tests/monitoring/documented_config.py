"""The Prometheus configuration docs/monitoring.md gives users, and the discovery it expects.

Debian's Prometheus is built without Kubernetes service discovery, so tests replace each job's
`kubernetes_sd_configs` with the targets and `__meta_kubernetes_*` labels the pod role would
discover (derived from real pod objects); the documented relabelings then run for real.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import yaml

from ..conftest import REPO

DOC = REPO / "docs" / "monitoring.md"
_NOT_IN_LABEL_NAMES = re.compile(r"[^a-zA-Z0-9_]")


def yaml_block(first_line: str) -> str:
    """The ```yaml block of docs/monitoring.md that starts with `first_line`."""
    blocks: list[str] = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    (block,) = [b for b in blocks if b.startswith(first_line)]
    return block


def documented_prometheus_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(yaml_block("# prometheus.yml"))
    return config


def discovered_pod_labels(pod: dict[str, Any], *, port_name: str) -> dict[str, str]:
    """The `__meta_kubernetes_*` labels the pod role gives the target of `pod`'s port `port_name`."""
    metadata = pod["metadata"]
    labels = {
        "__meta_kubernetes_namespace": metadata["namespace"],
        "__meta_kubernetes_pod_name": metadata["name"],
        "__meta_kubernetes_pod_container_port_name": port_name,
    }
    for kind, values in (("label", metadata.get("labels", {})), ("annotation", metadata.get("annotations", {}))):
        for key, value in values.items():
            labels[f"__meta_kubernetes_pod_{kind}_{_NOT_IN_LABEL_NAMES.sub('_', key)}"] = value
    return labels


def with_discovery(job: dict[str, Any], *, targets_file: Path) -> dict[str, Any]:
    """`job` discovering its targets from `targets_file` (file SD) instead of the Kubernetes API."""
    job = copy.deepcopy(job)
    del job["kubernetes_sd_configs"]
    job["file_sd_configs"] = [{"files": [str(targets_file)], "refresh_interval": "1s"}]
    return job


def write_targets(targets_file: Path, address: str, labels: dict[str, str]) -> None:
    """One discovered target; written whole then renamed, so Prometheus never reads half a file."""
    partial = targets_file.with_suffix(".tmp")
    partial.write_text(json.dumps([{"targets": [address], "labels": labels}]), encoding="utf-8")
    partial.replace(targets_file)
