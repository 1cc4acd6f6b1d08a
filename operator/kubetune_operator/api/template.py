"""`BaseModelTemplate.spec`: a base model's architecture, size, resources, defaults and limits.

The limits are Together's `FineTuneModelLimits` (epochs, evaluations, learning-rate bounds,
full and LoRA batch bounds, max LoRA rank, target modules); the rest is what a cluster needs
to run it: GPUs, nodes, node selectors, tolerations, memory.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, model_validator

from kubetune_trainer.contract import AttentionKernel, MasterWeights, ModelShapeFacts, Precision, Strategy, WireModel

from .crossfield import Violation, raise_violations
from .fields import HfRepoId, LabelValue, Quantity, Version
from .kube_shapes import Toleration
from .spec import Hyperparameters, LoraSpec

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
"""The node label (from NVIDIA GPU feature discovery) that `gpuProduct` selects on."""


class Architecture(WireModel):
    """Which models this template fits, as config.json names them."""

    family: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]*$", max_length=32)] = Field(
        description="Architecture family, e.g. llama, qwen, mistral, gemma, phi."
    )
    model_types: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=16, description="config.json `model_type` values of this family, e.g. [llama]."
    )
    architectures: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        min_length=1, max_length=16, description="config.json `architectures` entries, e.g. [LlamaForCausalLM]."
    )
    shape: ModelShapeFacts | None = Field(
        None,
        description="The template model's config.json numbers (widths, layers, heads, vocabulary, experts): the GPU "
        "planner sizes activations with them until the preflight reads the trained model's own; absent, it "
        "assumes a Llama-like decoder of the template's parameter count.",
    )


class Resources(WireModel):
    """What one trainer pod (one node) gets, and how many of them run."""

    nodes: int = Field(1, ge=1, le=128, description="Trainer pods (nodes) per job. Default 1.")
    gpus_per_node: int = Field(ge=0, le=16, description="GPUs per pod, requested as nvidia.com/gpu.")
    gpu_product: Annotated[LabelValue, Field(min_length=1)] | None = Field(
        None,
        description=f"GPU model, selected through the `{GPU_PRODUCT_LABEL}` node label, e.g. NVIDIA-H100-80GB-HBM3.",
    )
    gpu_memory: Quantity | None = Field(
        None,
        description="Memory of one GPU, e.g. 80G, which the GPU planner sizes jobs against. Default: the "
        "gpuProduct's (a -NNGB in its name), else 80G.",
    )
    node_selector: dict[str, LabelValue] = Field(default_factory=dict, description="Extra node selector labels.")
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Tolerations of trainer pods."
    )
    cpu: Quantity | None = Field(None, description="CPU request and limit per pod, e.g. 16.")
    memory: Quantity | None = Field(None, description="Memory request and limit per pod, e.g. 256Gi.")
    shm_size: Quantity | None = Field(None, description="Size of /dev/shm (a memory emptyDir), e.g. 64Gi.")
    ephemeral_storage: Quantity | None = Field(None, description="Ephemeral storage per pod, e.g. 200Gi.")


class TrainingDefaults(WireModel):
    """How the template trains, and the defaults it puts under a job's own values."""

    strategy: Strategy = Field(Strategy.DDP, description="ddp, or fsdp for models too large for one GPU.")
    precision: Precision = Field(Precision.BF16, description="bf16, fp16 or fp32 on GPU. Default bf16.")
    master_weights: MasterWeights = Field(
        MasterWeights.FP32,
        description="How bf16 training keeps the weights AdamW updates: fp32 (an fp32 master copy, 4 more bytes "
        "per parameter), bf16-compensated (each weight's rounding error kept, 2 more bytes) or bf16 (pure bf16: "
        "updates below half a bf16 step, most of them at learning rates near 1e-5, are lost). Default fp32.",
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory.")
    attention: AttentionKernel = Field(
        AttentionKernel.AUTO,
        description="Attention kernel for packed rows: auto (varlen, else flex, else sdpa), varlen, flex or sdpa. "
        "A kernel the device cannot run falls back, with a warning. Default auto.",
    )
    compile: bool = Field(
        False,
        description="torch.compile the decoder layers on GPUs (a run on a CPU stays eager: inductor's C++ build "
        "takes minutes there for little gain); where compilation fails the run goes on eager, with a warning. "
        "Default false.",
    )
    expected_tokens_per_second_per_gpu: float | None = Field(
        None,
        gt=0.0,
        description="Trained tokens per second per GPU this template reaches, as measured by the administrator; "
        "what `kubetune estimate job.yaml` divides by. Absent: no estimate.",
    )
    hyperparameters: Hyperparameters = Field(
        default_factory=Hyperparameters, description="Defaults for hyperparameters a job leaves out."
    )
    lora: LoraSpec = Field(default_factory=LoraSpec, description="Defaults for LoRA settings a job leaves out.")


class BatchLimits(WireModel):
    min_batch_size: int = Field(ge=1, description="Smallest effective batch size.")
    max_batch_size: int = Field(ge=1, description="Largest effective batch size; what `batchSize: max` means.")
    max_batch_size_dpo: int | None = Field(
        None,
        ge=1,
        description="Largest batch size (in preference pairs) for trainingMethod dpo, whose steps hold two "
        "sequences per pair. Default: half of maxBatchSize rounded down to a multiple of 8 (Together's rule), "
        "never below minBatchSize.",
    )

    @property
    def dpo_max(self) -> int:
        """The largest DPO batch: as set, else Together's rule (half, rounded down to a multiple of 8)."""
        if self.max_batch_size_dpo is not None:
            return self.max_batch_size_dpo
        half = self.max_batch_size // 2
        rounded = half - half % 8
        return max(self.min_batch_size, rounded if rounded >= self.min_batch_size else half)


class LoraLimits(BatchLimits):
    max_rank: int = Field(ge=1, le=1024, description="Largest LoRA rank; the default rank.")
    target_modules: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        min_length=1, max_length=64, description="Modules LoRA may adapt in this architecture."
    )


class Limits(WireModel):
    """Together's model limits: what a job on this template may ask for."""

    max_num_epochs: int = Field(ge=1, description="Most epochs a job may run.")
    max_num_evals: int = Field(ge=0, description="Most evaluations a job may run.")
    min_learning_rate: float = Field(gt=0.0, description="Smallest learning rate allowed.")
    max_learning_rate: float = Field(gt=0.0, description="Largest learning rate allowed.")
    full_training: BatchLimits | None = Field(
        None, description="Batch bounds for full fine-tuning; absent: not offered."
    )
    lora_training: LoraLimits | None = Field(None, description="Batch bounds and rank for LoRA; absent: not offered.")


class BaseModelTemplateSpec(WireModel):
    """A base-model template: the infrastructure and defaults a FineTuneJob runs under."""

    aliases: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list,
        max_length=32,
        description="Other names a job may use in `model`, e.g. togethercomputer/llama-2-7b-chat.",
    )
    hf_model: HfRepoId = Field(description="Hugging Face repo trained when a job gives no fromHfModel.")
    architecture: Architecture = Field(description="The models this template fits.")
    parameters: int = Field(ge=1, description="Parameter count of hfModel.")
    max_seq_length: int = Field(ge=32, description="Longest sequence this template trains, in tokens.")
    transformers_ceiling: Version = Field(
        description="Newest `transformers_version` a checkpoint may declare to run on this template."
    )
    resources: Resources = Field(description="GPUs, nodes and placement of trainer pods.")
    training: TrainingDefaults = Field(default_factory=TrainingDefaults, description="Strategy and defaults.")
    limits: Limits = Field(description="What a job on this template may ask for.")
    image: str | None = Field(None, max_length=512, description="Trainer image. Default: the operator's.")

    @model_validator(mode="after")
    def _check_cross_field_rules(self) -> Self:
        raise_violations("BaseModelTemplateSpec", template_violations(self))
        return self


def template_violations(spec: BaseModelTemplateSpec) -> list[Violation]:
    found: list[Violation] = []
    limits = spec.limits
    if limits.min_learning_rate > limits.max_learning_rate:
        found.append(
            Violation(("limits", "minLearningRate"), limits.min_learning_rate, "must not exceed maxLearningRate")
        )
    if limits.full_training is None and limits.lora_training is None:
        found.append(
            Violation(("limits",), None, "set fullTraining, loraTraining or both: a template must offer a method")
        )
    for key, bounds in (("fullTraining", limits.full_training), ("loraTraining", limits.lora_training)):
        if bounds is not None and bounds.min_batch_size > bounds.max_batch_size:
            found.append(
                Violation(("limits", key, "minBatchSize"), bounds.min_batch_size, "must not exceed maxBatchSize")
            )
    defaults = spec.training.hyperparameters
    if defaults.learning_rate is not None and not (
        limits.min_learning_rate <= defaults.learning_rate <= limits.max_learning_rate
    ):
        found.append(
            Violation(
                ("training", "hyperparameters", "learningRate"),
                defaults.learning_rate,
                f"must lie within limits [{limits.min_learning_rate}, {limits.max_learning_rate}]",
            )
        )
    if defaults.n_epochs is not None and defaults.n_epochs > limits.max_num_epochs:
        found.append(
            Violation(
                ("training", "hyperparameters", "nEpochs"),
                defaults.n_epochs,
                f"must not exceed limits.maxNumEpochs ({limits.max_num_epochs})",
            )
        )
    lora_r = spec.training.lora.r
    if lora_r is not None and limits.lora_training is not None and lora_r > limits.lora_training.max_rank:
        found.append(
            Violation(
                ("training", "lora", "r"),
                lora_r,
                f"must not exceed limits.loraTraining.maxRank ({limits.lora_training.max_rank})",
            )
        )
    return found
