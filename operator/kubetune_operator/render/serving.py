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
from ..api.serve import ServeKind, ServeSpec
from ..resolve.serving import serving_gpus
from ..settings import OperatorSettings
from .inference_service import inference_service
from .labels import JobRef
from .vllm_server import VLLM_PORT, vllm_deployment, vllm_service

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
