"""Pods as the sandbox's Job controller makes them from the operator's real rendered Jobs."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from kubetune_operator.render import render_attempt, render_preflight
from kubetune_operator.settings import OperatorSettings
from kubetune_sandbox.job_controller import pod_for
from kubetune_sandbox.layout import SandboxLayout
from kubetune_sandbox.pod_inputs import ApiEndpoint, Host, PodInputs
from kubetune_sandbox.pod_plan import ProcessPlan, plan_pod

from ..operator.core_builders import JOB, resolved, spec

SETTINGS = OperatorSettings(trainer_image="registry.example/kubetune/trainer:1.0", cache_claim="hf-cache")
HF_TOKEN = "hf_sandbox_secret_value_0123456789"
API_TOKEN = "sandbox-api-token"
ENDPOINT = ApiEndpoint(host="127.0.0.1", port=6443, ca_pem=b"-----BEGIN CERTIFICATE-----\n", token=API_TOKEN)
INTERPRETER = Path("/opt/venv/bin/python")
HOST = Host(interpreter=INTERPRETER, endpoint=ENDPOINT)
SINGLE_NODE = {
    "trainingFile": "pvc://datasets/chat/train.jsonl",
    "hfTokenSecretRef": {"name": "hf-token", "key": "token"},
    "output": {"uri": "pvc://models/support-bot"},
    "checkpoint": {"uri": "pvc://checkpoints/support-bot"},
}
TWO_NODES = {**SINGLE_NODE, "model": "meta-llama/Meta-Llama-3.1-70B-Instruct-Reference"}
HF_SECRET = {"metadata": {"name": "hf-token"}, "data": {"token": base64.b64encode(HF_TOKEN.encode()).decode()}}


def rendered(fields: dict[str, Any], *, preflight: bool = False) -> dict[str, dict[str, Any]]:
    """The operator's objects of attempt 1 (or the preflight) by kind."""
    job = resolved(spec(**fields), settings=SETTINGS)
    objects = (
        render_preflight(job, job=JOB, settings=SETTINGS)
        if preflight
        else render_attempt(job, job=JOB, attempt=1, settings=SETTINGS)
    )
    return {o["kind"]: o for o in objects}


def pod_of(batch_job: dict[str, Any], *, index: int | None) -> dict[str, Any]:
    """The Job controller's pod, as the API server stores it (name and uid given)."""
    job = {**batch_job, "metadata": {**batch_job["metadata"], "uid": "job-uid-1"}}
    pod = pod_for(job, index=index)
    suffix = "x7k2p"
    pod["metadata"].update(name=f"{pod['metadata']['generateName']}{suffix}", namespace=JOB.namespace, uid="pod-uid")
    return pod


def plan(
    pod: dict[str, Any],
    objects: dict[str, dict[str, Any]],
    *,
    layout: SandboxLayout,
    secrets: dict[str, Any] | None = None,
    ports: dict[tuple[str, str, int], int] | None = None,
) -> ProcessPlan:
    config_map = objects["ConfigMap"]
    services = {(JOB.namespace, objects["Service"]["metadata"]["name"])} if "Service" in objects else set()
    allocated = ports if ports is not None else {}
    return plan_pod(
        pod,
        layout=layout,
        inputs=PodInputs(
            secrets={"hf-token": HF_SECRET} if secrets is None else secrets,
            config_maps={config_map["metadata"]["name"]: config_map},
            services=services,
        ),
        host=HOST,
        host_port=lambda ns, service, port: allocated.setdefault((ns, service, port), 40000 + len(allocated)),
    )
