"""A job's record on another number of GPUs: the resize a user asks for with `spec.gpus`, applied on resume. Pure.

Every attempt runs the record stored at admission (`status.resolved.record`), never the live
template. The one thing a user may change on a job that has started is how many GPUs (and so
nodes) its next attempt holds: `spec.gpus`, read when an attempt after the first starts (a retry
after a preemption, a resume after suspend). The count is checked against the record alone, so
an edited template changes nothing: one GPU up to the recorded GPUs per node on one node, or
whole nodes of the recorded GPUs per node when the job runs on several nodes, up to the
template's maximum recorded in the plan. The memory arithmetic is done again at the new count
(activation checkpointing is turned on if the smaller count needs it; a count the model does not
fit at all is refused) and the resized record,
with its new digest, becomes the record from then on. The trainer resumes the checkpoint of the
old world size by resharding it (`runtime.reshardOnResume`), the data position and effective
batch unchanged.
"""

from __future__ import annotations

from kubetune_trainer.contract import ModelShapeFacts

from ..api.gpu_plan import GpuPlan
from ..api.record import ResolvedJob
from .gpu_plan import Sizing, model_shape


def resize_request(record: ResolvedJob, gpus: int | None) -> int | None:
    """The GPU count `spec.gpus` asks for when it differs from the record's; None: nothing to resize."""
    if gpus is None or record.gpu_plan is None or gpus == record.gpu_plan.gpus:
        return None
    return gpus


def resized(
    record: ResolvedJob, gpus: int, *, parameters: int | None = None, shape: ModelShapeFacts | None = None
) -> ResolvedJob:
    """`record` on `gpus` GPUs; ValueError naming spec.gpus and the counts it may take.

    `parameters` and `shape` are the model's (status.resolved.parameters and modelShape, from the
    preflight); absent, the template's as recorded.
    """
    plan = record.gpu_plan
    if plan is None:
        raise ValueError(f"spec.gpus {gpus}: template {record.template.name} runs on CPUs only; unset spec.gpus")
    nodes, per_node = _layout(record, plan, gpus)
    sizing = Sizing(
        shape=model_shape(
            parameters or record.template.parameters,
            found=shape,
            template=record.template.shape,
            template_parameters=record.template.parameters,
        ),
        strategy=record.strategy,
        precision=record.precision,
        master_weights=record.master_weights,
        lora_rank=record.lora.r if record.lora is not None else None,
        lora_dropout=record.lora is not None and record.lora.dropout > 0,
        seq=record.hyperparameters.max_seq_length,
        gpu_memory_bytes=plan.gpu_memory_bytes,
        max_gpus=plan.max_gpus,
        checkpointing_first=record.gradient_checkpointing,
        model_types=tuple(record.template.model_types),
        compiled=record.compile,
    )
    new_plan = sizing.plan(nodes, per_node, requested=True)
    assert new_plan is not None  # a requested count is always planned
    if not new_plan.fits:
        raise ValueError(
            f"spec.gpus {gpus} is too few for this job: {new_plan.describe()}. Ask for more GPUs, or unset spec.gpus "
            f"to keep {plan.gpus}."
        )
    wire = record.to_wire()
    wire["resources"] = {**wire["resources"], "nodes": nodes, "gpusPerNode": per_node}
    wire["gpuPlan"] = new_plan.to_wire()
    wire["gradientCheckpointing"] = new_plan.gradient_checkpointing
    return ResolvedJob.parse(wire)


def _layout(record: ResolvedJob, plan: GpuPlan, gpus: int) -> tuple[int, int]:
    """(nodes, GPUs per node) for `gpus`, from what the record knows of the template's nodes."""
    per_node = record.gpus_per_node
    if gpus <= per_node:
        return 1, gpus
    if record.nodes > 1 and gpus % per_node == 0 and gpus <= plan.max_gpus:
        return gpus // per_node, per_node
    if record.nodes > 1:
        allowed = f"1 to {per_node} on one node, or a multiple of {per_node} up to {plan.max_gpus}"
    else:
        allowed = f"1 to {per_node} (the job's own count on its one node)"
    raise ValueError(
        f"spec.gpus {gpus} cannot resize this job, which holds {plan.gpus} GPU(s) on {plan.nodes} node(s): "
        f"a resume may run on {allowed}. For a larger layout, create a new job with fromCheckpoint naming this one."
    )
