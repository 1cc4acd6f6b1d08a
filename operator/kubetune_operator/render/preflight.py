"""The CPU-only preflight Job: checks the model's config.json and the data before any GPU is held."""

from __future__ import annotations

from typing import Any

from ..api.record import ResolvedJob
from ..settings import OperatorSettings
from .configmap import CONFIG_PATH
from .labels import JobRef, metadata_for
from .pod import (
    CONTAINER,
    added_env,
    container_security_context,
    plain_env,
    pod_security_context,
    secret_env,
    volumes_and_mounts,
)

PREFLIGHT_COMMAND = ["python", "-m", "kubetune_trainer", "preflight", "--config", CONFIG_PATH]


def preflight_job(
    resolved: ResolvedJob,
    *,
    job: JobRef,
    name: str,
    labels: dict[str, str],
    config_map: str,
    settings: OperatorSettings,
    service_account: str | None = None,
) -> dict[str, Any]:
    volumes, mounts = volumes_and_mounts(resolved, config_map=config_map, settings=settings, shm=False)
    amounts = {"cpu": settings.preflight_cpu, "memory": settings.preflight_memory}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": resolved.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(PREFLIGHT_COMMAND),
        "env": [*plain_env(), *secret_env(resolved), *added_env(resolved)],
        # No nvidia.com/gpu: the preflight must never hold a GPU.
        "resources": {"requests": dict(amounts), "limits": dict(amounts)},
        "volumeMounts": mounts,
        "securityContext": container_security_context(),
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # The preflight reports only through its termination message: no API token.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(settings),
        "containers": [container],
        "volumes": volumes,
    }
    if service_account is not None:
        # A cloud identity (IRSA, Workload Identity) for s3:// data; still no Kubernetes API token.
        pod_spec["serviceAccountName"] = service_account
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata_for(job, name=name, labels=labels),
        "spec": {
            "completions": 1,
            "parallelism": 1,
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": pod_spec,
            },
        },
    }
