"""How many GPUs and nodes a fine-tune needs, from the model's size and the template's GPUs. Pure.

Built on the trainer's memory model (`kubetune_trainer.memory_model`, which imports no torch):
for each GPU count from one up to the template's maximum (nodes x gpusPerNode) the planner
estimates the peak bytes on one GPU for one micro-batch of `maxSeqLength` tokens (the least the
trainer's token budget ever plans) and keeps the first count that fits the template's memory per
GPU, less the memory model's reserve and usable fraction. Activation checkpointing is turned on
only when the count would not fit without it. Under DDP every GPU holds the whole model, so more
GPUs never make it fit: the plan is one GPU or none. Under FSDP the weights, gradients and
optimizer state divide by the GPU count. Within one node any count up to gpusPerNode is planned;
past one node only whole nodes are.

The activations per token follow the model's shape (`model_shape`): the trained model's own, which the
preflight reads from its config.json (`ModelFacts.shape`); before that the template's
(`architecture.shape`); a template that names none is planned as a Llama-like decoder of its size
(`shape_for_parameters`), which is far off for a mixture of experts. The static memory (weights,
gradients, AdamW state) uses the exact parameter count. The template's model types say whether the trainer's
lean norms and MLPs serve it (`memory_model.lean_layers_of`): Gemma's layers, for one, keep
transformers' own activations, about twice as many bytes per token. A job can ask for more GPUs than planned
(`spec.gpus`), never for more than the template's maximum.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from kubetune_trainer.contract import MasterWeights, ModelShapeFacts, Precision, Strategy
from kubetune_trainer.memory_model import (
    RESERVE_BYTES,
    USABLE_FRACTION,
    ModelShape,
    TrainingSetup,
    estimate,
    lean_layers_of,
)

from ..api.gpu_plan import GpuPlan
from ..api.template import BaseModelTemplateSpec

GB = 1000**3
GIB = 1024**3
__all__ = ["GpuPlan", "gpu_memory_bytes", "model_shape", "plan_gpus", "quantity_bytes", "shape_for_parameters"]
DEFAULT_GPU_MEMORY_BYTES = 80 * GB
"""Memory per GPU when neither resources.gpuMemory nor the gpuProduct name says it: an 80 GB H100/A100."""
GPU_MEMORY_OF_PRODUCT: dict[str, int] = {
    "NVIDIA-H100-80GB-HBM3": 80 * GB,
    "NVIDIA-H200": 141 * GB,
    "NVIDIA-A100-SXM4-40GB": 40 * GB,
    "NVIDIA-A100-SXM4-80GB": 80 * GB,
    "NVIDIA-L40S": 48 * GB,
}
"""Memory per GPU of the nvidia.com/gpu.product values kubetune knows (vendor figures, decimal GB)."""
_GB_IN_NAME = re.compile(r"-(\d+)GB\b")
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_QUANTITY_UNITS = {None: 1, "k": 1000, "M": 1000**2, "G": GB, "T": 1000**4}
_QUANTITY_UNITS.update({"Ki": 1024, "Mi": 1024**2, "Gi": GIB, "Ti": 1024**4})
HEAD_DIM = 128
"""Head width of the shape assumed from a parameter count (Llama, Mistral, Qwen2.5 all use 128)."""
ASSUMED_VOCAB = 32000
ACTIVATION_HEADROOM = 1
"""Micro-batches planned on one GPU: one, of maxSeqLength tokens (the trainer's floor)."""


def quantity_bytes(quantity: int | str) -> int:
    """A Kubernetes quantity (`80Gi`, `141G`, an integer) in bytes; ValueError names the bad value."""
    if isinstance(quantity, int):
        return quantity
    match = _QUANTITY.match(quantity)
    if match is None:
        raise ValueError(f"resources.gpuMemory {quantity!r} is not a quantity: write e.g. 80Gi or 141G")
    return int(float(match.group(1)) * _QUANTITY_UNITS[match.group(2)])


def gpu_memory_bytes(spec: BaseModelTemplateSpec) -> int:
    """resources.gpuMemory; else the known gpuProduct's; else its name's `-NNGB`; else 80 GB."""
    resources = spec.resources
    if resources.gpu_memory is not None:
        return quantity_bytes(resources.gpu_memory)
    product = resources.gpu_product or ""
    if product in GPU_MEMORY_OF_PRODUCT:
        return GPU_MEMORY_OF_PRODUCT[product]
    named = _GB_IN_NAME.search(product)
    return int(named.group(1)) * GB if named else DEFAULT_GPU_MEMORY_BYTES


def shape_for_parameters(parameters: int) -> ModelShape:
    """A Llama-like decoder of `parameters` parameters: 12 x layers x hidden^2 with hidden = 128 x layers.

    Llama-2-7B (4096 hidden, 32 layers) and the 8B Llamas sit on that line; only activations
    depend on it, the parameter count itself is kept exact.
    """
    hidden = max(HEAD_DIM, round((HEAD_DIM * parameters / 12) ** (1 / 3) / HEAD_DIM) * HEAD_DIM)
    layers = max(1, round(hidden / HEAD_DIM))
    heads = hidden // HEAD_DIM
    intermediate = math.ceil(8 * hidden / 3 / 256) * 256
    return ModelShape(hidden, layers, intermediate, heads, heads, ASSUMED_VOCAB, HEAD_DIM, False, parameters)


def model_shape(
    parameters: int,
    *,
    found: ModelShapeFacts | None = None,
    template: ModelShapeFacts | None = None,
    template_parameters: int | None = None,
) -> ModelShape:
    """The shape a plan sizes with: the one the preflight `found` in the model's config.json; else the
    `template`'s, for a model of the template's size; else a Llama-like decoder of `parameters`."""
    if found is not None:
        return ModelShape.from_facts(found, parameters=parameters)
    if template is not None and parameters == template_parameters:
        return ModelShape.from_facts(template, parameters=parameters)
    return shape_for_parameters(parameters)


def _counts(max_nodes: int, gpus_per_node: int) -> list[tuple[int, int]]:
    """(nodes, GPUs per node) from fewest GPUs up: 1..gpusPerNode on one node, then whole nodes."""
    within = [(1, g) for g in range(1, gpus_per_node + 1)]
    return within + [(n, gpus_per_node) for n in range(2, max_nodes + 1)]


@dataclass(frozen=True)
class Sizing:
    """What the memory arithmetic of one job needs, whatever the GPU count: the planner's fixed inputs."""

    shape: ModelShape
    strategy: Strategy
    precision: Precision
    master_weights: MasterWeights
    lora_rank: int | None
    lora_dropout: bool
    seq: int
    gpu_memory_bytes: int
    max_gpus: int
    checkpointing_first: bool
    """Whether activation checkpointing is tried first (the template's setting); it is turned on when needed."""
    model_types: tuple[str, ...]
    """The template's config.json model types: whether the trainer's lean norms and MLPs serve them
    (`memory_model.lean_layers_of`) sets the activations per token."""
    compiled: bool = False
    """The template compiles the decoder layers (`training.compile`), which then keep fewer activations."""

    @property
    def usable(self) -> int:
        return int(self.gpu_memory_bytes * USABLE_FRACTION) - RESERVE_BYTES

    def at(self, nodes: int, gpus: int, checkpointing: bool) -> tuple[int, int, int]:
        """(peak bytes on one GPU, static bytes, activation bytes) at `nodes` x `gpus`."""
        total = nodes * gpus
        lean_norms, lean_mlp = lean_layers_of(self.model_types)
        setup = TrainingSetup.for_run(
            self.shape,
            precision=self.precision.value,
            master_weights=self.master_weights.value,
            lora_rank=self.lora_rank,
            lora_dropout=self.lora_dropout,
            gradient_checkpointing=checkpointing,
            shards=total if self.strategy is Strategy.FSDP else 1,
            ddp_buckets=self.strategy is Strategy.DDP and total > 1,
            compiled=self.compiled,
            lean_norms=lean_norms,
            lean_mlp=lean_mlp,
            attention_length=self.seq,
        )
        figures = estimate(self.shape, setup, micro_batch_tokens=self.seq * ACTIVATION_HEADROOM)
        return figures.total, figures.static, figures.activations + figures.loss_chunk

    def plan(self, nodes: int, gpus: int, requested: bool) -> GpuPlan | None:
        """The plan at `nodes` x `gpus` (checkpointing turned on if needed); None when it does not fit and
        was not requested (a requested count is kept, marked as not fitting)."""
        usable = self.usable
        for checkpointing in dict.fromkeys([self.checkpointing_first, True]):
            total, static, activations = self.at(nodes, gpus, checkpointing)
            if total <= usable or (requested and checkpointing):
                return GpuPlan(
                    gpus=nodes * gpus,
                    nodes=nodes,
                    gpus_per_node=gpus,
                    gradient_checkpointing=checkpointing,
                    fits=total <= usable,
                    requested=requested,
                    per_gpu_bytes=total,
                    usable_bytes=max(usable, 0),
                    gpu_memory_bytes=self.gpu_memory_bytes,
                    static_bytes=static,
                    activation_bytes=activations,
                    max_gpus=self.max_gpus,
                )
        return None


def plan_gpus(
    spec: BaseModelTemplateSpec,
    *,
    parameters: int | None = None,
    shape: ModelShapeFacts | None = None,
    lora_rank: int | None,
    lora_dropout: bool = False,
    strategy: Strategy | None = None,
    precision: Precision | None = None,
    master_weights: MasterWeights | None = None,
    max_seq_length: int | None = None,
    requested_gpus: int | None = None,
) -> GpuPlan:
    """The fewest GPUs of `spec`'s maximum that fit the model, or `requested_gpus` when the job asks for more.

    `parameters` defaults to the template's; `shape` is the model's (the preflight's), else the template's
    (`model_shape`); the other
    settings default to the template's. `lora_rank` None is full fine-tuning; `lora_dropout` is LoRA
    dropout above 0 (its masks are activations). The template's model types say whether the trainer's
    lean layers serve the model, which sets the activations per token. ValueError when
    `requested_gpus` is past the template's maximum or not a whole number of nodes.
    """
    training = spec.training
    count = parameters if parameters is not None else spec.parameters
    model = model_shape(count, found=shape, template=spec.architecture.shape, template_parameters=spec.parameters)
    strategy = strategy or training.strategy
    precision = precision or training.precision
    master = master_weights or training.master_weights
    seq = max_seq_length or spec.max_seq_length
    memory = gpu_memory_bytes(spec)
    usable = int(memory * USABLE_FRACTION) - RESERVE_BYTES
    per_node = max(1, spec.resources.gpus_per_node)
    counts = _counts(spec.resources.nodes, per_node)
    max_gpus = counts[-1][0] * counts[-1][1]

    sizing = Sizing(
        shape=model,
        strategy=strategy,
        precision=precision,
        master_weights=master,
        lora_rank=lora_rank,
        lora_dropout=lora_dropout,
        seq=seq,
        gpu_memory_bytes=memory,
        max_gpus=max_gpus,
        checkpointing_first=training.gradient_checkpointing,
        model_types=tuple(spec.architecture.model_types),
        compiled=training.compile,
    )
    at, plan = sizing.at, sizing.plan

    if requested_gpus is not None:
        for nodes, gpus in counts:
            if nodes * gpus == requested_gpus:
                chosen = plan(nodes, gpus, requested=True)
                assert chosen is not None
                planned = plan_gpus(
                    spec,
                    parameters=count,
                    shape=shape,
                    lora_rank=lora_rank,
                    lora_dropout=lora_dropout,
                    strategy=strategy,
                    precision=precision,
                    master_weights=master,
                    max_seq_length=seq,
                )
                if planned.gpus <= requested_gpus:
                    return chosen
                return planned
        raise ValueError(
            f"spec.gpus {requested_gpus} is not a count this template runs: 1 to {per_node} on one node, or a "
            f"multiple of {per_node} up to {max_gpus} (the template's nodes x gpusPerNode)"
        )
    for nodes, gpus in counts:
        if strategy is Strategy.DDP and nodes * gpus > 1:
            break
        found = plan(nodes, gpus, requested=False)
        if found is not None:
            return found
    # Nothing fits: the template's maximum (FSDP) or one GPU (DDP), marked as not fitting.
    nodes, gpus = counts[-1] if strategy is Strategy.FSDP else (1, 1)
    total, static, activations = at(nodes, gpus, True)
    return GpuPlan(
        gpus=nodes * gpus,
        nodes=nodes,
        gpus_per_node=gpus,
        gradient_checkpointing=True,
        fits=False,
        per_gpu_bytes=total,
        usable_bytes=max(usable, 0),
        gpu_memory_bytes=memory,
        static_bytes=static,
        activation_bytes=activations,
        max_gpus=max_gpus,
    )


def default_lora_rank(spec: BaseModelTemplateSpec) -> int | None:
    """The rank a job on `spec` trains LoRA at by default (the template's, else its maximum); None: no LoRA."""
    bounds = spec.limits.lora_training
    if bounds is None:
        return None
    return spec.training.lora.r or bounds.max_rank


def template_plans(
    spec: BaseModelTemplateSpec,
    *,
    parameters: int | None = None,
    max_positions: int | None = None,
    shape: ModelShapeFacts | None = None,
) -> list[tuple[str, GpuPlan]]:
    """The plan for each way `spec` trains at its defaults: (`LoRA r=N` or `full`, plan); `parameters`,
    `max_positions` and `shape` are the model's, when known."""
    seq = min(spec.max_seq_length, max_positions) if max_positions else spec.max_seq_length
    plans: list[tuple[str, GpuPlan]] = []
    rank = default_lora_rank(spec)
    if rank is not None:
        plans.append(
            (f"LoRA r={rank}", plan_gpus(spec, parameters=parameters, shape=shape, lora_rank=rank, max_seq_length=seq))
        )
    if spec.limits.full_training is not None:
        plans.append(("full", plan_gpus(spec, parameters=parameters, shape=shape, lora_rank=None, max_seq_length=seq)))
    return plans
