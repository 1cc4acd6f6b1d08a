"""What the vLLM and KServe serving objects share: labels, placement, resources, the token, the LoRA arguments.

Pure: from the record stored at admission (status.resolved), never the live template.
"""

from __future__ import annotations

from typing import Any

from ..api.record import ResolvedJob
from ..api.serve import ServeSpec
from ..api.template import GPU_PRODUCT_LABEL
from ..resolve.serving import CPUS_PER_GPU, lora_rank_for_vllm, server_memory_gib
from .labels import COMPONENT_LABEL, MANAGED_BY_LABEL, JobRef, metadata_for
from .trainer_config import HF_TOKEN_ENV

SERVING = "serving"
SERVING_LABEL = "kubetune.dev/serving"
"""On the server's pods (and the Service's selector): the serving name."""
SERVED_JOB_LABEL = "kubetune.dev/served-job"
"""On every serving object: the FineTuneJob it serves (not kubetune.dev/job: the operator's watches skip them)."""
SERVED_UID_ANNOTATION = "kubetune.dev/served-job-uid"
"""On every serving object: the uid of that FineTuneJob, so a create meeting 409 knows its own object."""
MODEL_DIR = "/mnt/models"
"""Where a downloaded (s3://) output lands in a vLLM pod, and where KServe's storage initializer puts storageUri."""
CACHE_DIR = "/tmp/cache"


def serving_metadata(serve: ServeSpec, *, job: JobRef, name: str) -> dict[str, Any]:
    labels = {SERVED_JOB_LABEL: job.name, COMPONENT_LABEL: SERVING, MANAGED_BY_LABEL: "kubetune"}
    metadata = metadata_for(job, name=name, labels=labels)
    if not serve.owned:
        del metadata["ownerReferences"]  # left behind when the job is deleted, as asked
    metadata["annotations"] = {SERVED_UID_ANNOTATION: job.uid}
    return metadata


def placement(record: ResolvedJob, gpus: int) -> dict[str, Any]:
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


def server_resources(record: ResolvedJob, gpus: int, *, parameters: int | None) -> dict[str, Any]:
    """GPUs from the record's plan; host memory for the weights; CPUs in proportion to the GPUs."""
    memory = f"{server_memory_gib(record, parameters=parameters)}Gi"
    requests: dict[str, Any] = {"cpu": str(CPUS_PER_GPU * max(gpus, 1)), "memory": memory}
    limits: dict[str, Any] = {"memory": memory}
    if gpus:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(gpus)
    return {"requests": requests, "limits": limits}


def hf_token_env(record: ResolvedJob) -> list[dict[str, Any]]:
    ref = record.hf_token_secret_ref
    if ref is None:
        return []
    return [{"name": HF_TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}]


def lora_args(record: ResolvedJob, adapter_path: str) -> list[str]:
    assert record.lora is not None
    rank = lora_rank_for_vllm(record.lora.r) or record.lora.r
    return [
        "--enable-lora",
        f"--lora-modules={record.output_name}={adapter_path}",
        f"--max-lora-rank={rank}",
    ]


def pvc_path(uri: str, root: str) -> tuple[str, str]:
    """pvc://claim/path -> (claim, the path under a mount of that claim at `root`)."""
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    return claim, f"{root}/{path}".rstrip("/")
