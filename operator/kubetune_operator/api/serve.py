"""`spec.serve` and `status.serving`: handing a trained model to an inference server.

A job with `spec.serve` gets, once it has Succeeded, a KServe InferenceService or a vLLM
Deployment and Service that read the job's output where the trainer wrote it; an unmerged
LoRA output is served as an adapter over its base model. What was created (or why it could
not be) is in `status.serving`; a failure is also a warning and an Event, never a failed job.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Self

from pydantic import ConfigDict, Field, JsonValue, model_validator

from kubetune_trainer.contract import KubeTime, WireModel

from .crossfield import Violation, raise_violations
from .fields import DnsSubdomain

DEFAULT_VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"
"""The vLLM server image of `kind: vllm` when `serve.image` names none."""

SERVABLE_OUTPUT_CEL = "^(pvc|s3)://.+|^hf://[^/]+/[^/]+$"
"""Output URIs a server in the cluster can read: a claim, a bucket, a Hugging Face repo."""
_SERVABLE_OUTPUT = re.compile(SERVABLE_OUTPUT_CEL)
OUTPUT_NOT_SERVABLE = (
    "no server can read this output: it stays in the trainer's pod (a file:// or plain path); "
    "set output.uri to pvc://claim/path, s3://bucket/prefix or hf://org/repo, or remove serve"
)

ServeName = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$")]
"""A DNS-1035 label short enough for what KServe appends (`-predictor`, and its revisions)."""


class ServeKind(enum.StrEnum):
    KSERVE = "kserve"
    VLLM = "vllm"


IMAGE_NEEDS_VLLM = "only kind vllm takes an image (KServe picks its runtime's): remove image, or set kind: vllm"


class ServeSpec(WireModel):
    """Serve the trained model once the job has Succeeded."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.kind == 'vllm' || !has(self.image)",
                    "message": f"image: {IMAGE_NEEDS_VLLM}",
                    "fieldPath": ".image",
                    "reason": "FieldValueForbidden",
                }
            ]
        }
    )

    kind: ServeKind = Field(
        description="kserve: a KServe InferenceService (serving.kserve.io/v1beta1, Hugging Face runtime, vLLM "
        "backend); vllm: an apps/v1 Deployment running `vllm serve`, with a v1 Service."
    )
    owned: bool = Field(
        True,
        description="True: the serving objects are owned by the FineTuneJob and deleted with it; false: they "
        "stay after the job is deleted. Default true.",
    )
    name: ServeName | None = Field(
        None, description="Name of the serving objects (40 characters at most). Default: the job's name."
    )
    gpus: int | None = Field(
        None,
        ge=0,
        le=16,
        description="GPUs of the server (tensor parallel size). Default: the fewest of the job's recorded GPUs "
        "per node that hold the weights twice over (status.resolved), 0 on a CPU template.",
    )
    replicas: int = Field(1, ge=0, le=64, description="Server replicas (KServe: minReplicas). Default 1.")
    image: Annotated[str, Field(min_length=1, max_length=512)] | None = Field(
        None, description=f"kind vllm: the vLLM server image. Default {DEFAULT_VLLM_IMAGE}."
    )
    service_account_name: DnsSubdomain | None = Field(
        None,
        description="ServiceAccount of the server pods, e.g. one holding s3:// credentials for KServe's storage "
        "initializer, or an IRSA or Workload Identity role. Default: the namespace's default.",
    )

    @model_validator(mode="after")
    def _image_only_for_vllm(self) -> Self:
        if self.image is not None and self.kind != ServeKind.VLLM:
            raise_violations("ServeSpec", [Violation(("image",), self.image, IMAGE_NEEDS_VLLM)])
        return self


class ServingState(enum.StrEnum):
    CREATED = "Created"
    FAILED = "Failed"


class ServingStatus(WireModel):
    """The serving objects made for a Succeeded job, or why they could not be made."""

    kind: ServeKind = Field(description="kserve or vllm.")
    name: str = Field(description="Name of the InferenceService, or of the Deployment and Service.")
    state: ServingState = Field(description="Created, or Failed (see message; the job itself stays Succeeded).")
    owned: bool = Field(description="Whether the objects are owned by the FineTuneJob (deleted with it).")
    objects: list[str] = Field(default_factory=list, description="The objects, as Kind/name.")
    model: str | None = Field(None, description="The model name a client sends (an adapter's own name for LoRA).")
    url: str | None = Field(
        None,
        description="Where to send requests: the Service's cluster DNS name for vllm, the InferenceService's "
        "status.url for kserve once KServe reports it.",
    )
    message: str | None = Field(None, description="Why the objects could not be created, and what to do.")
    time: KubeTime = Field(description="When they were created, or creating them failed.")


def output_violations(serve: ServeSpec | None, output_uri: str | None) -> list[Violation]:
    """The spec-level rule: an output named in the spec must be one a server can read."""
    if serve is None or output_uri is None or _SERVABLE_OUTPUT.match(output_uri):
        return []
    return [Violation(("serve",), serve.kind.value, f"output.uri {output_uri}: {OUTPUT_NOT_SERVABLE}")]


def output_servable(output_uri: str) -> bool:
    return _SERVABLE_OUTPUT.match(output_uri) is not None


SERVE_CEL_RULE: JsonValue = {
    "rule": f"!has(self.serve) || !has(self.output) || self.output.uri.matches('{SERVABLE_OUTPUT_CEL}')",
    "message": f"serve: {OUTPUT_NOT_SERVABLE}",
    "fieldPath": ".serve",
    "reason": "FieldValueInvalid",
}
"""`output_violations` in CEL, for the API server."""
