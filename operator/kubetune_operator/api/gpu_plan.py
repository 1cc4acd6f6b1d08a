"""The GPU plan a job records: how many GPUs and nodes the model needs, and the memory arithmetic behind it.

`kubetune_operator.resolve.gpu_plan` computes it; the resolution record and `status.resolved.gpuPlan` carry it.
"""

from __future__ import annotations

from pydantic import Field

from kubetune_trainer.contract import WireModel

_GIB = 1024**3


class GpuPlan(WireModel):
    """The GPUs a job holds, and the memory arithmetic they were chosen by (bytes on one GPU)."""

    gpus: int = Field(ge=1, description="GPUs the job holds: nodes x gpusPerNode.")
    nodes: int = Field(ge=1, description="Trainer pods.")
    gpus_per_node: int = Field(ge=1, description="GPUs per trainer pod.")
    gradient_checkpointing: bool = Field(description="Whether activations are recomputed (turned on when needed).")
    fits: bool = Field(description="Whether the estimate fits the GPU's memory at this count.")
    requested: bool = Field(False, description="Whether the count is the job's own spec.gpus rather than planned.")
    per_gpu_bytes: int = Field(ge=0, description="Estimated peak bytes on one GPU for one maxSeqLength micro-batch.")
    usable_bytes: int = Field(ge=0, description="Bytes of one GPU the plan may fill (usable fraction, less reserve).")
    gpu_memory_bytes: int = Field(ge=1, description="Memory of one GPU.")
    static_bytes: int = Field(ge=0, description="Weights, gradients and optimizer state on one GPU.")
    activation_bytes: int = Field(ge=0, description="Activations and the loss chunk of one micro-batch on one GPU.")
    max_gpus: int = Field(ge=1, description="The template's maximum: nodes x gpusPerNode.")

    def describe(self) -> str:
        need = f"{self.per_gpu_bytes / _GIB:.1f} GiB per GPU of {self.usable_bytes / _GIB:.1f} GiB usable"
        checkpointing = "activation checkpointing on" if self.gradient_checkpointing else "no activation checkpointing"
        how = "requested" if self.requested else "planned"
        verdict = "" if self.fits else " (does not fit: the template's GPUs are too small for this model)"
        return (
            f"{self.gpus} GPU(s) on {self.nodes} node(s) {how} (template maximum {self.max_gpus}): "
            f"{need} ({self.static_bytes / _GIB:.1f} GiB weights, gradients and optimizer state, "
            f"{self.activation_bytes / _GIB:.1f} GiB activations), {checkpointing}{verdict}"
        )
