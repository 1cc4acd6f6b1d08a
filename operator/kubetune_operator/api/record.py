"""The record of what runs: a FineTuneJob resolved against its template, frozen at admission.

`ResolvedJob` is what resolution produces and what every attempt is rendered from. Once the
preflight has passed (with the commit sha its revision resolved to), the operator stores it in
`status.resolved.record` with a hash; retries and resumes render from that record, never from
the live template or a fresh resolution, so a template edited later reaches new jobs only.
"""

from __future__ import annotations

import functools
import hashlib
import json

from pydantic import Field

from kubetune_trainer.contract import (
    AttentionKernel,
    LoraConfig,
    MasterWeights,
    Precision,
    Strategy,
    TemplateExpectations,
    TrainingHyperparameters,
    WarningNote,
    WireModel,
)

from .gpu_plan import GpuPlan
from .kube_shapes import SecretKeyRef
from .pod_additions import PodAdditions
from .spec import S3StorageSpec, WandbSpec
from .template import Resources


class ResolvedJob(WireModel):
    """A FineTuneJob with its template applied: every value concrete, every limit checked."""

    template: TemplateExpectations = Field(
        description="The template the job runs under: its name and what it expects of the model."
    )
    template_reasons: list[str] = Field(default_factory=list, description="Why this template (model: auto).")
    model_repo: str = Field(description="Hugging Face repo trained.")
    revision: str = Field(description="Revision requested.")
    revision_sha: str | None = Field(
        None, description="The commit the revision resolved to at admission: every attempt downloads exactly it."
    )
    hf_token_secret_ref: SecretKeyRef | None = Field(None, description="Secret key of the HF token.")
    training_file: str = Field(description="Training data URI.")
    validation_file: str | None = Field(None, description="Validation data URI.")
    hyperparameters: TrainingHyperparameters = Field(description="Hyperparameters as they run.")
    lora: LoraConfig | None = Field(None, description="LoRA as it runs; absent for full fine-tuning.")
    output_uri: str = Field(description="Where the trained model goes.")
    output_name: str = Field(description="Output model name: <model>-<suffix>.")
    output_private: bool = Field(True, description="Create Hugging Face output repos as private.")
    checkpoint_uri: str | None = Field(None, description="Where checkpoints live; absent: retries start over.")
    checkpoint_root: str | None = Field(
        None, description="The location holding `<root>/<job>/` per job: checkpoint.uri, or <default>/<namespace>."
    )
    from_checkpoint: str | None = Field(
        None, description="Another job's checkpoint to start from, `<job>@<uid>[:<step>]` (its uid's checkpoints)."
    )
    wandb: WandbSpec | None = Field(None, description="Weights & Biases logging.")
    s3: S3StorageSpec | None = Field(None, description="S3-style credentials reference, endpoint and region.")
    pod: PodAdditions | None = Field(
        None, description="The job's pod additions (spec.pod), as the operator's settings allowed them at admission."
    )
    image: str = Field(description="Trainer image.")
    resources: Resources = Field(description="Nodes, GPUs and placement of trainer pods.")
    strategy: Strategy = Field(description="ddp or fsdp.")
    precision: Precision = Field(description="Training precision.")
    master_weights: MasterWeights = Field(
        MasterWeights.FP32, description="How bf16 training keeps the weights AdamW updates."
    )
    gradient_checkpointing: bool = Field(description="Recompute activations to save memory.")
    attention: AttentionKernel = Field(AttentionKernel.AUTO, description="Attention kernel for packed rows.")
    compile: bool = Field(False, description="torch.compile the decoder layers.")
    expected_tokens_per_second_per_gpu: float | None = Field(
        None, gt=0.0, description="The template's declared training throughput (for cost estimates)."
    )
    preflight: bool = Field(description="Whether the CPU-only preflight runs before GPUs are held.")
    queue_name: str | None = Field(None, description="Kueue LocalQueue.")
    priority_class_name: str | None = Field(None, description="PriorityClass of trainer pods.")
    warnings: list[WarningNote] = Field(default_factory=list, description="What resolution noticed.")
    gpu_plan: GpuPlan | None = Field(
        None, description="The GPUs the model needs (absent on CPU templates): `resources` holds its nodes and GPUs."
    )

    @property
    def nodes(self) -> int:
        return self.resources.nodes

    @property
    def gpus_per_node(self) -> int:
        return self.resources.gpus_per_node

    def digest(self) -> str:
        """sha256 of the record's canonical JSON: equal records, equal digests."""
        return self._digest

    @functools.cached_property
    def _digest(self) -> str:
        # Once per record: the admission pass stores it in status and renders it into the ConfigMap.
        canonical = json.dumps(self.to_wire(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
