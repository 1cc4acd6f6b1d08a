"""Pod pieces shared by trainer and preflight pods: security, volumes, mounts, secret env.

Pods satisfy the restricted Pod Security profile: non-root, no privilege escalation, every
capability dropped, the runtime's default seccomp profile, and only emptyDir, ConfigMap and
PersistentVolumeClaim volumes. A job's own additions (spec.pod, within the operator's allow-lists)
are added here: env and claims in every pod, tolerations and node affinity in trainer pods.
"""

from __future__ import annotations

from typing import Any

from ..api.record import ResolvedJob
from ..settings import OperatorSettings
from .configmap import CONFIG_DIR
from .object_store import object_store_env
from .trainer_config import HF_TOKEN_ENV, WANDB_API_KEY_ENV

CACHE_DIR = "/cache"
HF_CACHE_DIR = f"{CACHE_DIR}/hf"
WORK_DIR = "/work"
CONTAINER = "trainer"


def pod_security_context(settings: OperatorSettings) -> dict[str, Any]:
    uid = settings.run_as_user
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def secret_env(resolved: ResolvedJob) -> list[dict[str, Any]]:
    """The HF token, W&B key and object-store env (keys as references): the operator never reads a Secret."""
    env: list[dict[str, Any]] = []
    if resolved.hf_token_secret_ref is not None:
        ref = resolved.hf_token_secret_ref
        env.append({"name": HF_TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    if resolved.wandb is not None:
        ref = resolved.wandb.api_key_secret_ref
        env.append({"name": WANDB_API_KEY_ENV, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    env.extend(object_store_env(resolved))
    return env


def added_env(resolved: ResolvedJob) -> list[dict[str, Any]]:
    """spec.pod's env, as the operator's settings allowed it at admission (Secrets stay references)."""
    pod = resolved.pod
    if pod is None:
        return []
    env: list[dict[str, Any]] = [{"name": e.name, "value": e.value} for e in pod.env]
    env += [
        {"name": e.name, "valueFrom": {"secretKeyRef": {"name": e.secret_key_ref.name, "key": e.secret_key_ref.key}}}
        for e in pod.env_from_secrets
    ]
    return env


def plain_env() -> list[dict[str, Any]]:
    return [
        {"name": "HF_HOME", "value": HF_CACHE_DIR},
        {"name": "HOME", "value": "/tmp"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


def pvc_claims(resolved: ResolvedJob) -> dict[str, bool]:
    """Claims named by pvc:// URIs -> whether the pod writes to them (output, checkpoints)."""
    claims: dict[str, bool] = {}
    for uri, writes in (
        (resolved.training_file, False),
        (resolved.validation_file, False),
        (resolved.output_uri, True),
        (resolved.checkpoint_uri, True),
    ):
        if uri and uri.startswith("pvc://"):
            claim = uri.removeprefix("pvc://").split("/", 1)[0]
            claims[claim] = claims.get(claim, False) or writes
    return claims


def volumes_and_mounts(
    resolved: ResolvedJob,
    *,
    config_map: str,
    settings: OperatorSettings,
    shm: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pod volumes and the container's mounts: config, cache, scratch, /tmp, /dev/shm, data claims."""
    resources = resolved.resources
    work: dict[str, Any] = {"emptyDir": {}}
    if resources.ephemeral_storage is not None:
        work = {"emptyDir": {"sizeLimit": str(resources.ephemeral_storage)}}
    cache: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": settings.cache_claim}} if settings.cache_claim else {"emptyDir": {}}
    )
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": config_map}},
        {"name": "cache", **cache},
        {"name": "work", **work},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "cache", "mountPath": CACHE_DIR},
        {"name": "work", "mountPath": WORK_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if shm:
        # NCCL and DataLoader workers share memory through /dev/shm; the container default is 64 MiB.
        medium: dict[str, Any] = {"medium": "Memory"}
        if resources.shm_size is not None:
            medium["sizeLimit"] = str(resources.shm_size)
        volumes.append({"name": "dshm", "emptyDir": medium})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    for index, (claim, writes) in enumerate(sorted(pvc_claims(resolved).items())):
        volume = f"pvc-{index}"
        volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": claim, "readOnly": not writes}})
        mounts.append({"name": volume, "mountPath": f"{settings.pvc_mount_root}/{claim}", "readOnly": not writes})
    for added in resolved.pod.volumes if resolved.pod is not None else []:
        name = f"{ADDED_VOLUME_PREFIX}{added.name}"[:63]
        volumes.append(
            {"name": name, "persistentVolumeClaim": {"claimName": added.claim_name, "readOnly": added.read_only}}
        )
        mounts.append({"name": name, "mountPath": added.mount_path, "readOnly": added.read_only})
    return volumes, mounts


ADDED_VOLUME_PREFIX = "extra-"
"""spec.pod.volumes are named extra-<name> in pods, apart from kubetune's own (config, cache, work, pvc-N...)."""
