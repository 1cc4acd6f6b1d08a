"""The `kind: vllm` serving objects: an apps/v1 Deployment running `vllm serve`, and its v1 Service.

The output is read where the trainer wrote it: a claim mounted read-only, a bucket copied in by an
init container with the job's object-store env, or a Hub repo vLLM fetches itself. An unmerged LoRA
output is served with `--enable-lora --lora-modules` over the base at the commit trained.
"""

from __future__ import annotations

from typing import Any

from ..api.record import ResolvedJob
from ..api.serve import DEFAULT_VLLM_IMAGE, ServeSpec
from ..resolve.serving import unmerged_adapter
from ..settings import OperatorSettings
from .labels import COMPONENT_LABEL, JobRef
from .object_store import object_store_env
from .pod import container_security_context, pod_security_context
from .serving_parts import (
    CACHE_DIR,
    MODEL_DIR,
    SERVING,
    SERVING_LABEL,
    hf_token_env,
    lora_args,
    placement,
    pvc_path,
    server_resources,
    serving_metadata,
)

VLLM_PORT = 8000
S3_DOWNLOADER_IMAGE = "amazon/aws-cli:2.27.50"
"""Copies an s3:// output into the vLLM pod before the server starts (it reads AWS_* like the trainer)."""

Json = dict[str, Any]


def _output_in_pod(record: ResolvedJob, settings: OperatorSettings) -> tuple[str, list[Json], list[Json], list[Json]]:
    """Where the server finds the output: (its path or repo id, volumes, mounts, init containers)."""
    output = record.output_uri
    if output.startswith("pvc://"):
        claim = output.removeprefix("pvc://").partition("/")[0]
        root = f"{settings.pvc_mount_root}/{claim}"
        _, local = pvc_path(output, root)
        volume = {"name": "output", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        return local, [volume], [{"name": "output", "mountPath": root, "readOnly": True}], []
    if output.startswith("s3://"):
        local = f"{MODEL_DIR}/output"
        download = {
            "name": "download",
            "image": S3_DOWNLOADER_IMAGE,
            "command": ["aws", "s3", "sync", "--only-show-errors", output.rstrip("/"), local],
            "env": [{"name": "HOME", "value": CACHE_DIR}, *object_store_env(record)],
            "volumeMounts": [{"name": "output", "mountPath": MODEL_DIR}, {"name": "cache", "mountPath": CACHE_DIR}],
            "securityContext": container_security_context(),
        }
        return local, [{"name": "output", "emptyDir": {}}], [{"name": "output", "mountPath": MODEL_DIR}], [download]
    return output.removeprefix("hf://"), [], [], []  # hf://org/repo: vLLM reads the Hub itself


def vllm_deployment(
    serve: ServeSpec,
    record: ResolvedJob,
    *,
    job: JobRef,
    name: str,
    gpus: int,
    parameters: int | None,
    settings: OperatorSettings,
) -> dict[str, Any]:
    local, volumes, mounts, init = _output_in_pod(record, settings)
    volumes = [{"name": "cache", "emptyDir": {}}, *volumes]
    mounts = [{"name": "cache", "mountPath": CACHE_DIR}, *mounts]
    env: list[Json] = [
        {"name": "HOME", "value": CACHE_DIR},
        {"name": "HF_HOME", "value": f"{CACHE_DIR}/hf"},
        *hf_token_env(record),
    ]
    if unmerged_adapter(record):
        base = record.model_repo
        args = [base, f"--served-model-name={base}"]
        if record.revision_sha:
            args.append(f"--revision={record.revision_sha}")
        args += lora_args(record, local)
    else:
        args = [local, f"--served-model-name={record.output_name}"]
    args += ["--host=0.0.0.0", f"--port={VLLM_PORT}"]
    if gpus > 1:
        args.append(f"--tensor-parallel-size={gpus}")
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})  # NCCL between the GPUs
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    selector = {SERVING_LABEL: name}
    health = {"httpGet": {"path": "/health", "port": VLLM_PORT}}
    container: dict[str, Any] = {
        "name": "vllm",
        "image": serve.image or DEFAULT_VLLM_IMAGE,
        "command": ["vllm", "serve"],
        "args": args,
        "env": env,
        "ports": [{"name": "http", "containerPort": VLLM_PORT}],
        "volumeMounts": mounts,
        # Loading weights takes minutes: the startup probe waits up to 30 of them before liveness applies.
        "startupProbe": {**health, "periodSeconds": 10, "failureThreshold": 180},
        "readinessProbe": {**health, "periodSeconds": 10},
        "livenessProbe": {**health, "periodSeconds": 30, "failureThreshold": 3},
        "securityContext": container_security_context(),
    }
    container["resources"] = server_resources(record, gpus, parameters=parameters)
    pod: dict[str, Any] = {
        "securityContext": pod_security_context(settings),
        **placement(record, gpus),
        "containers": [container],
        "volumes": volumes,
    }
    if init:
        pod["initContainers"] = init
    if serve.service_account_name is not None:
        pod["serviceAccountName"] = serve.service_account_name
    metadata = serving_metadata(serve, job=job, name=name)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": serve.replicas,
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": {**selector, COMPONENT_LABEL: SERVING}}, "spec": pod},
        },
    }


def vllm_service(serve: ServeSpec, *, job: JobRef, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": serving_metadata(serve, job=job, name=name),
        "spec": {
            "type": "ClusterIP",
            "selector": {SERVING_LABEL: name},
            "ports": [{"name": "http", "port": VLLM_PORT, "targetPort": "http"}],
        },
    }
