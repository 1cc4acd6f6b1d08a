"""The Indexed batch/v1 Job that runs one attempt: one pod per node, torchrun in each.

backoffLimit is 0 because the operator owns retries: it classifies a failure before deciding
to run again, and a retry is a new attempt (new names) resuming from the newest checkpoint.
"""

from __future__ import annotations

from typing import Any

from ..api.record import ResolvedJob
from ..api.template import GPU_PRODUCT_LABEL
from ..settings import OperatorSettings
from .configmap import CONFIG_PATH
from .labels import QUEUE_LABEL, JobRef, metadata_for
from .naming import pod_hostname, trainer_account_name
from .pod import (
    CONTAINER,
    added_env,
    container_security_context,
    plain_env,
    pod_security_context,
    secret_env,
    volumes_and_mounts,
)
from .service import RENDEZVOUS_PORT

GPU_RESOURCE = "nvidia.com/gpu"
METRICS_PORT_NAME = "metrics"


SHUTDOWN_SLACK_SECONDS = 5
"""What torchrun's agent waits past the trainer's SIGTERM budget for its Result and exit."""


def torchrun_command(
    resolved: ResolvedJob, *, name: str, attempt: int, service: str | None, settings: OperatorSettings
) -> list[str]:
    """`torchrun ... -m kubetune_trainer --config ...`; multi-node rendezvous at pod 0 through the Service.

    On SIGTERM the agent forwards it to the workers and SIGKILLs them after `--shutdown-timeout`
    (30 s by default): it must outlast the trainer's checkpoint budget, or a raised
    checkpointGraceSeconds is cut short with no checkpoint and no Result. It stays within the
    pod's terminationGracePeriodSeconds (the budget plus terminationMarginSeconds).
    """
    per_node = max(1, resolved.gpus_per_node)
    shutdown = settings.checkpoint_grace_seconds + min(SHUTDOWN_SLACK_SECONDS, settings.termination_margin_seconds)
    command = ["torchrun", "--nnodes", str(resolved.nodes), "--nproc-per-node", str(per_node)]
    command += ["--shutdown-timeout", str(shutdown)]
    if service is None:
        # One node: c10d on a free local port, no Service needed.
        command.append("--standalone")
    else:
        endpoint = f"{pod_hostname(name, attempt, 0)}.{service}:{RENDEZVOUS_PORT}"
        command += ["--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", f"{name}-a{attempt}"]
    return [*command, "-m", "kubetune_trainer", "--config", CONFIG_PATH]


def trainer_resources(resolved: ResolvedJob) -> dict[str, Any]:
    """Requests equal to limits (Guaranteed QoS): GPUs cannot be overcommitted anyway."""
    amounts: dict[str, str] = {}
    template = resolved.resources
    if resolved.gpus_per_node:
        amounts[GPU_RESOURCE] = str(resolved.gpus_per_node)
    for key, value in (
        ("cpu", template.cpu),
        ("memory", template.memory),
        ("ephemeral-storage", template.ephemeral_storage),
    ):
        if value is not None:
            amounts[key] = str(value)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def node_selector(resolved: ResolvedJob) -> dict[str, str]:
    selector = dict(resolved.resources.node_selector)
    if resolved.resources.gpu_product:
        selector[GPU_PRODUCT_LABEL] = resolved.resources.gpu_product
    return selector


def trainer_job(
    resolved: ResolvedJob,
    *,
    job: JobRef,
    name: str,
    attempt: int,
    labels: dict[str, str],
    config_map: str,
    service: str | None,
    settings: OperatorSettings,
) -> dict[str, Any]:
    volumes, mounts = volumes_and_mounts(resolved, config_map=config_map, settings=settings, shm=True)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": resolved.image,
        "imagePullPolicy": "IfNotPresent",
        "command": torchrun_command(resolved, name=job.name, attempt=attempt, service=service, settings=settings),
        "env": [*plain_env(), *secret_env(resolved), *added_env(resolved)],
        "resources": trainer_resources(resolved),
        "volumeMounts": mounts,
        "securityContext": container_security_context(),
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    ports = []
    if service is not None:
        ports.append({"name": "rendezvous", "containerPort": RENDEZVOUS_PORT})
    if settings.trainer_metrics_port:
        # Rank 0 serves Prometheus metrics here; the chart's PodMonitor scrapes the port by name.
        ports.append({"name": METRICS_PORT_NAME, "containerPort": settings.trainer_metrics_port})
    if ports:
        container["ports"] = ports
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": trainer_account_name(job.name),
        # The ServiceAccount mounts no token by default; only trainer pods (rank 0 reports) get one.
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "securityContext": pod_security_context(settings),
        "containers": [container],
        "volumes": volumes,
    }
    if service is not None:
        pod_spec["subdomain"] = service
    if selector := node_selector(resolved):
        pod_spec["nodeSelector"] = selector
    added = resolved.pod
    tolerations = [*resolved.resources.tolerations, *(added.tolerations if added is not None else [])]
    if tolerations:
        pod_spec["tolerations"] = [t.to_wire() for t in tolerations]
    if added is not None and added.affinity is not None:
        pod_spec["affinity"] = added.affinity.to_wire()
    if resolved.priority_class_name:
        pod_spec["priorityClassName"] = resolved.priority_class_name
    job_labels = dict(labels)
    if resolved.queue_name:
        job_labels[QUEUE_LABEL] = resolved.queue_name
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata_for(job, name=name, labels=job_labels),
        "spec": {
            "completionMode": "Indexed",
            "completions": resolved.nodes,
            "parallelism": resolved.nodes,
            "backoffLimit": 0,
            # With a queue, Kueue admits the Job by unsuspending it; the operator never touches it after.
            "suspend": bool(resolved.queue_name),
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }
