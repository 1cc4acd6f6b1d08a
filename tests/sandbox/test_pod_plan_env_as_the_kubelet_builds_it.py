"""Environment entries beyond what kubetune renders: the downward API, ConfigMap keys, envFrom, $(VAR)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from kubetune_sandbox.layout import SandboxLayout
from kubetune_sandbox.pod_inputs import PodInputs, PodPlanError
from kubetune_sandbox.pod_plan import ProcessPlan, plan_pod

from .rendered_pods import HOST

LAYOUT = SandboxLayout(Path("/sandbox"))
SETTINGS_MAP = {"metadata": {"name": "settings"}, "data": {"level": "debug", "paths.yaml": "out: /data/out\n"}}
SECRET = {"metadata": {"name": "creds"}, "data": {"user": base64.b64encode(b"alice").decode()}}


def _plan(container: dict[str, Any], **spec: Any) -> ProcessPlan:
    pod = {
        "metadata": {
            "name": "p",
            "namespace": "ml",
            "uid": "u-1",
            "labels": {"app": "demo"},
            "annotations": {"note": "hi"},
        },
        "spec": {"serviceAccountName": "runner", "containers": [{"name": "c", "image": "i", **container}], **spec},
    }
    inputs = PodInputs(secrets={"creds": SECRET}, config_maps={"settings": SETTINGS_MAP})
    return plan_pod(pod, layout=LAYOUT, inputs=inputs, host=HOST, host_port=lambda *_: 1)


def test_downward_api_configmap_keys_env_from_and_expansion() -> None:
    plan = _plan(
        {
            "command": ["sh", "-c", "echo $(GREETING) $$(NOT)"],
            "envFrom": [{"secretRef": {"name": "creds"}, "prefix": "DB_"}],
            "env": [
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
                {"name": "GREETING", "value": "hello $(POD) in $(NS)"},
                {"name": "OPTIONAL", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
            ],
        }
    )
    env = plan.env
    assert (env["POD"], env["NS"], env["UID"], env["APP"], env["NOTE"]) == ("p", "ml", "u-1", "demo", "hi")
    assert (env["IP"], env["NODE"], env["SA"], env["LEVEL"]) == ("127.0.0.1", "kubetune-sandbox", "runner", "debug")
    assert env["DB_user"] == "alice"
    assert env["GREETING"] == "hello p in ml"
    assert "OPTIONAL" not in env
    assert plan.argv == ("sh", "-c", "echo hello p in ml $(NOT)")


def test_a_yaml_configmap_file_names_host_paths() -> None:
    plan = _plan(
        {
            "command": ["true"],
            "volumeMounts": [{"name": "s", "mountPath": "/etc/s"}, {"name": "d", "mountPath": "/data"}],
        },
        volumes=[{"name": "s", "configMap": {"name": "settings"}}, {"name": "d", "emptyDir": {}}],
    )
    pod_dir = Path("/sandbox/pods/ml/p")
    assert plan.files[pod_dir / "volumes/s/paths.yaml"] == f"out: {pod_dir}/volumes/d/out\n".encode()
    assert plan.files[pod_dir / "volumes/s/level"] == b"debug"


def test_a_missing_configmap_key_and_an_unknown_field_are_refused() -> None:
    missing = {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "absent"}}}
    with pytest.raises(PodPlanError, match="couldn't find key absent in ConfigMap ml/settings"):
        _plan({"command": ["true"], "env": [missing]})
    unknown = {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nothing"}}}
    with pytest.raises(PodPlanError, match=r"fieldRef spec\.nothing"):
        _plan({"command": ["true"], "env": [unknown]})


def test_a_container_without_a_command_cannot_run_here() -> None:
    with pytest.raises(PodPlanError, match="needs a command"):
        _plan({})
