"""(spec.serve, the job's record) -> the serving objects: a KServe InferenceService, or a vLLM Deployment
and Service. Pure: no client, no clock.

Everything comes from the record stored at admission (status.resolved): where the output is, whether
it is an unmerged LoRA adapter (served with `--enable-lora --lora-modules` over the base model at the
commit trained), the GPUs and their placement. Names are stable, so a second render is the same object
and a create that meets 409 has found it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ..api.record import ResolvedJob
from ..api.serve import DEFAULT_VLLM_IMAGE, ServeKind, ServeSpec
from ..api.template import GPU_PRODUCT_LABEL
from ..resolve.serving import CPUS_PER_GPU, lora_rank_for_vllm, server_memory_gib, serving_gpus, unmerged_adapter
from ..settings import OperatorSettings
from .labels import COMPONENT_LABEL, MANAGED_BY_LABEL, JobRef, metadata_for
from .object_store import object_store_env
from .pod import container_security_context, pod_security_context
from .trainer_config import HF_TOKEN_ENV

KSERVE_API_VERSION = "serving.kserve.io/v1beta1"
SERVING = "serving"
SERVING_LABEL = "kubetune.dev/serving"
"""On the server's pods (and the Service's selector): the serving name."""
SERVED_JOB_LABEL = "kubetune.dev/served-job"
"""On every serving object: the FineTuneJob it serves (not kubetune.dev/job: the operator's watches skip them)."""
SERVED_UID_ANNOTATION = "kubetune.dev/served-job-uid"
"""On every serving object: the uid of that FineTuneJob, so a create meeting 409 knows its own object."""
VLLM_PORT = 8000
MODEL_DIR = "/mnt/models"
"""Where a downloaded (s3://) output lands in a vLLM pod, and where KServe's storage initializer puts storageUri."""
S3_DOWNLOADER_IMAGE = "amazon/aws-cli:2.27.50"
"""Copies an s3:// output into the vLLM pod before the server starts (it reads AWS_* like the trainer)."""
CACHE_DIR = "/tmp/cache"
NAME_MAX = 40
_HASH = 8


@dataclass(frozen=True)
class ServingPlan:
    """What to create, and what status.serving says of it."""

    kind: ServeKind
    name: str
    manifests: list[dict[str, Any]]
    model: str
    """The name a client sends in `model`: the output name (the adapter's own name for LoRA)."""
    url: str | None
    """The vLLM Service's cluster DNS URL; None for KServe until its status.url appears."""
    objects: list[str] = field(default_factory=list)


def serving_name(job_name: str, serve: ServeSpec) -> str:
    """`serve.name`, else the job's name, cut to 40 characters with a hash of the whole when longer."""
    if serve.name is not None:
        return serve.name
    if len(job_name) <= NAME_MAX:
        return job_name
    digest = hashlib.sha256(job_name.encode()).hexdigest()[:_HASH]
    return f"{job_name[: NAME_MAX - _HASH - 1].rstrip('-')}-{digest}"


def render_serving(
    serve: ServeSpec,
    record: ResolvedJob,
    *,
    job: JobRef,
    parameters: int | None,
    settings: OperatorSettings,
) -> ServingPlan:
    """The serving objects for `record`'s output, in creation order. `parameters`: status.resolved's count."""
    name = serving_name(job.name, serve)
    gpus = serving_gpus(serve, record, parameters=parameters)
    if serve.kind == ServeKind.KSERVE:
        manifest = inference_service(serve, record, job=job, name=name, gpus=gpus, parameters=parameters)
        return ServingPlan(
            kind=serve.kind,
            name=name,
            manifests=[manifest],
            model=record.output_name,
            url=None,
            objects=[f"InferenceService/{name}"],
        )
    manifests = [
        vllm_deployment(serve, record, job=job, name=name, gpus=gpus, parameters=parameters, settings=settings),
        vllm_service(serve, job=job, name=name),
    ]
    return ServingPlan(
        kind=serve.kind,
        name=name,
        manifests=manifests,
        model=record.output_name,
        url=f"http://{name}.{job.namespace}.svc.cluster.local:{VLLM_PORT}/v1",
        objects=[f"Deployment/{name}", f"Service/{name}"],
    )


def _metadata(serve: ServeSpec, *, job: JobRef, name: str) -> dict[str, Any]:
    labels = {SERVED_JOB_LABEL: job.name, COMPONENT_LABEL: SERVING, MANAGED_BY_LABEL: "kubetune"}
    metadata = metadata_for(job, name=name, labels=labels)
    if not serve.owned:
        del metadata["ownerReferences"]  # left behind when the job is deleted, as asked
    metadata["annotations"] = {SERVED_UID_ANNOTATION: job.uid}
    return metadata


def _placement(record: ResolvedJob, gpus: int) -> dict[str, Any]:
    """The record's node selector and tolerations, so the server lands on the GPUs the job trained on."""
    resources = record.resources
    selector = dict(resources.node_selector)
    if gpus and resources.gpu_product:
        selector[GPU_PRODUCT_LABEL] = resources.gpu_product
    placement: dict[str, Any] = {}
    if selector:
        placement["nodeSelector"] = selector
    if resources.tolerations:
        placement["tolerations"] = [t.to_wire() for t in resources.tolerations]
    return placement


def _resources(record: ResolvedJob, gpus: int, *, parameters: int | None) -> dict[str, Any]:
    """GPUs from the record's plan; host memory for the weights; CPUs in proportion to the GPUs."""
    memory = f"{server_memory_gib(record, parameters=parameters)}Gi"
    requests: dict[str, Any] = {"cpu": str(CPUS_PER_GPU * max(gpus, 1)), "memory": memory}
    limits: dict[str, Any] = {"memory": memory}
    if gpus:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(gpus)
    return {"requests": requests, "limits": limits}


def _hf_token_env(record: ResolvedJob) -> list[dict[str, Any]]:
    ref = record.hf_token_secret_ref
    if ref is None:
        return []
    return [{"name": HF_TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}]


def _lora_args(record: ResolvedJob, adapter_path: str) -> list[str]:
    assert record.lora is not None
    rank = lora_rank_for_vllm(record.lora.r) or record.lora.r
    return [
        "--enable-lora",
        f"--lora-modules={record.output_name}={adapter_path}",
        f"--max-lora-rank={rank}",
    ]


def _pvc_path(uri: str, root: str) -> tuple[str, str]:
    """pvc://claim/path -> (claim, the path under a mount of that claim at `root`)."""
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    return claim, f"{root}/{path}".rstrip("/")


# vLLM ------------------------------------------------------------------------------------------


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
    output = record.output_uri
    volumes: list[dict[str, Any]] = [{"name": "cache", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "cache", "mountPath": CACHE_DIR}]
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": CACHE_DIR},
        {"name": "HF_HOME", "value": f"{CACHE_DIR}/hf"},
        *_hf_token_env(record),
    ]
    init: list[dict[str, Any]] = []
    if output.startswith("pvc://"):
        claim = output.removeprefix("pvc://").partition("/")[0]
        root = f"{settings.pvc_mount_root}/{claim}"
        _, local = _pvc_path(output, root)
        volumes.append({"name": "output", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        mounts.append({"name": "output", "mountPath": root, "readOnly": True})
    elif output.startswith("s3://"):
        local = f"{MODEL_DIR}/output"
        volumes.append({"name": "output", "emptyDir": {}})
        mounts.append({"name": "output", "mountPath": MODEL_DIR})
        init.append(
            {
                "name": "download",
                "image": S3_DOWNLOADER_IMAGE,
                "command": ["aws", "s3", "sync", "--only-show-errors", output.rstrip("/"), local],
                "env": [{"name": "HOME", "value": CACHE_DIR}, *object_store_env(record)],
                "volumeMounts": [{"name": "output", "mountPath": MODEL_DIR}, {"name": "cache", "mountPath": CACHE_DIR}],
                "securityContext": container_security_context(),
            }
        )
    else:  # hf://org/repo: vLLM reads the Hub itself
        local = output.removeprefix("hf://")
    if unmerged_adapter(record):
        base = record.model_repo
        args = [base, f"--served-model-name={base}"]
        if record.revision_sha:
            args.append(f"--revision={record.revision_sha}")
        args += _lora_args(record, local)
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
    container["resources"] = _resources(record, gpus, parameters=parameters)
    pod: dict[str, Any] = {
        "securityContext": pod_security_context(settings),
        **_placement(record, gpus),
        "containers": [container],
        "volumes": volumes,
    }
    if init:
        pod["initContainers"] = init
    if serve.service_account_name is not None:
        pod["serviceAccountName"] = serve.service_account_name
    metadata = _metadata(serve, job=job, name=name)
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
        "metadata": _metadata(serve, job=job, name=name),
        "spec": {
            "type": "ClusterIP",
            "selector": {SERVING_LABEL: name},
            "ports": [{"name": "http", "port": VLLM_PORT, "targetPort": "http"}],
        },
    }


# KServe ----------------------------------------------------------------------------------------


def inference_service(
    serve: ServeSpec, record: ResolvedJob, *, job: JobRef, name: str, gpus: int, parameters: int | None
) -> dict[str, Any]:
    """The Hugging Face runtime with the vLLM backend: storageUri for what is on a claim or in a bucket."""
    output = record.output_uri
    model: dict[str, Any] = {"modelFormat": {"name": "huggingface"}}
    args = ["--backend=vllm"]
    predictor: dict[str, Any] = {"minReplicas": serve.replicas}
    if unmerged_adapter(record):
        # --model_id takes precedence over the downloaded storageUri: the base comes from the Hub at the
        # commit trained, and the adapter (a claim's or a bucket's) is what KServe puts in /mnt/models.
        args += [f"--model_name={name}", f"--model_id={record.model_repo}"]
        if record.revision_sha:
            args.append(f"--model_revision={record.revision_sha}")
        if output.startswith("hf://"):
            adapter = output.removeprefix("hf://")
        else:
            model["storageUri"] = output.rstrip("/")
            adapter = MODEL_DIR
        args += _lora_args(record, adapter)
    elif output.startswith("hf://"):
        args += [f"--model_name={record.output_name}", f"--model_id={output.removeprefix('hf://')}"]
    else:
        args.append(f"--model_name={record.output_name}")
        model["storageUri"] = output.rstrip("/")
    if gpus > 1:
        args.append(f"--tensor-parallel-size={gpus}")
    model["args"] = args
    if env := _hf_token_env(record):
        model["env"] = env
    model["resources"] = _resources(record, gpus, parameters=parameters)
    predictor.update(_placement(record, gpus))
    if serve.service_account_name is not None:
        predictor["serviceAccountName"] = serve.service_account_name
    predictor["model"] = model
    return {
        "apiVersion": KSERVE_API_VERSION,
        "kind": "InferenceService",
        "metadata": _metadata(serve, job=job, name=name),
        "spec": {"predictor": predictor},
    }
