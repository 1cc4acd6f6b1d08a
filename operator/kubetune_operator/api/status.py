"""`FineTuneJob.status`: what a user sees in `kubectl get` and `kubectl describe`.

The operator owns every field here except `stage`, `stages` and `progress`, which rank 0 of
the trainer patches (their models come from the contract, so both sides write one shape).
"""

from __future__ import annotations

import enum

from pydantic import Field

from kubetune_trainer.contract import (
    JobError,
    KubeTime,
    LoraConfig,
    ModelShapeFacts,
    Progress,
    Stage,
    StageRecord,
    TrainingHyperparameters,
    WarningNote,
    WireModel,
)

from .estimate import CostEstimate
from .gpu_plan import GpuPlan
from .record import ResolvedJob
from .serve import ServingStatus


class Phase(enum.StrEnum):
    PENDING = "Pending"
    VALIDATING = "Validating"
    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    CANCELLED = "Cancelled"


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED})


class ConditionType(enum.StrEnum):
    VALIDATED = "Validated"
    SCHEDULED = "Scheduled"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    CANCELLED = "Cancelled"


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(WireModel):
    """A condition in Kubernetes' standard shape (metav1.Condition)."""

    type: ConditionType = Field(description="Validated, Scheduled, Running, Succeeded, Failed, Suspended or Cancelled.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="CamelCase reason code.",
    )
    message: str = Field("", max_length=32768, description="Human-readable details.")
    last_transition_time: KubeTime = Field(description="When status last changed.")
    observed_generation: int | None = Field(None, ge=0, description="The spec generation this reflects.")


class Resolved(WireModel):
    """What really runs, after the template and its defaults are applied."""

    template: str | None = Field(None, description="BaseModelTemplate chosen.")
    template_reasons: list[str] = Field(default_factory=list, description="Why that template, for `model: auto`.")
    model_repo: str | None = Field(None, description="Hugging Face repo trained.")
    revision: str | None = Field(None, description="Revision requested.")
    revision_sha: str | None = Field(None, description="Commit sha the revision resolved to.")
    architecture: str | None = Field(None, description="Model architecture, e.g. LlamaForCausalLM.")
    parameters: int | None = Field(None, ge=0, description="Parameter count of the model trained.")
    max_positions: int | None = Field(None, ge=1, description="The model's own maximum sequence length.")
    model_shape: ModelShapeFacts | None = Field(
        None, description="The model's config.json numbers the GPU plan sized with (a resize sizes with them again)."
    )
    from_checkpoint: str | None = Field(
        None,
        description="The lineage of a fromCheckpoint job: the checkpoint it continues, `<job>@<uid>[:<step>]` "
        "(modelRepo and revisionSha are that job's).",
    )
    nodes: int | None = Field(None, ge=1, description="Trainer pods.")
    gpus_per_node: int | None = Field(None, ge=0, description="GPUs per trainer pod.")
    image: str | None = Field(None, description="Trainer image.")
    hyperparameters: TrainingHyperparameters | None = Field(None, description="Hyperparameters as they run.")
    lora: LoraConfig | None = Field(None, description="LoRA as it runs; absent for full fine-tuning.")
    record: ResolvedJob | None = Field(
        None,
        description="The whole resolution, stored once at admission (after the preflight): every attempt, "
        "retry and resume renders from it, never from the live template.",
    )
    hash: str | None = Field(None, description="sha256 of `record`; the attempt's ConfigMap carries the same.")
    gpu_plan: GpuPlan | None = Field(None, description="The GPUs the model needs, as the GPU planner sized them.")


class CheckpointRecord(WireModel):
    step: int = Field(ge=0, description="Optimizer step of the checkpoint.")
    uri: str = Field(description="Where it is stored.")
    time: KubeTime = Field(description="When it was written.")
    type: str = Field("Intermediate", description="Intermediate or Final.")
    attempt: int | None = Field(None, ge=1, description="The attempt that reported it.")
    epoch: float | None = Field(None, ge=0.0, description="Epochs completed at that step, fractional.")
    train_loss: float | None = Field(None, description="Training loss of that step.")
    eval_loss: float | None = Field(None, description="Validation loss, when evaluated at that step.")


class EvalRecord(WireModel):
    """One evaluation on the validation file, as status.evalHistory keeps it."""

    step: int = Field(ge=0, description="Optimizer steps completed when it ran (0: before training).")
    eval_loss: float = Field(description="Loss on the validation file.")
    time: KubeTime = Field(description="When the evaluation finished.")


class Announcement(WireModel):
    """The last Event of one progress kind the operator posted: what it said and when."""

    value: float = Field(description="The step (checkpoints, evaluations) or the epoch number announced.")
    time: KubeTime = Field(description="When the Event was posted.")


class Announcements(WireModel):
    """The last progress Events posted, so they stay rate-limited across reconciles and operator restarts."""

    checkpoint: Announcement | None = Field(None, description="The last CheckpointSaved Event.")
    epoch: Announcement | None = Field(None, description="The last EpochCompleted Event.")
    evaluation: Announcement | None = Field(None, description="The last EvaluationCompleted Event.")


class OutputModel(WireModel):
    uri: str = Field(description="Where the trained model is.")
    name: str = Field(description="Output model name.")
    files: int | None = Field(None, ge=0, description="Number of files.")
    bytes: int | None = Field(None, ge=0, description="Total size in bytes.")


class FineTuneJobStatus(WireModel):
    """Observed state of a FineTuneJob."""

    phase: Phase | None = Field(
        None, description="Pending, Validating, Queued, Running, Succeeded, Failed, Suspended or Cancelled."
    )
    stage: Stage | None = Field(None, description="Trainer stage running now.")
    stages: list[StageRecord] = Field(default_factory=list, description="Stages of the current attempt.")
    progress: Progress | None = Field(None, description="Training progress.")
    conditions: list[Condition] = Field(default_factory=list, description="Standard Kubernetes conditions.")
    error: JobError | None = Field(None, description="Why the job failed, and what to change.")
    warnings: list[WarningNote] = Field(default_factory=list, description="Things that did not stop the job.")
    resolved: Resolved | None = Field(None, description="What really runs.")
    attempt: int = Field(0, ge=0, description="Current attempt; 0 before the first.")
    retries: int = Field(
        0, ge=0, description="Attempts started after a retryable failure (limited by spec.maxRetries)."
    )
    preflight_retries: int = Field(
        0, ge=0, description="Preflight runs repeated after a retryable failure (limited by spec.maxRetries)."
    )
    checkpoints: list[CheckpointRecord] = Field(
        default_factory=list, description="Checkpoints written, oldest first (the newest 20 are kept)."
    )
    eval_history: list[EvalRecord] = Field(
        default_factory=list, description="Evaluations on the validation file, oldest first (the newest 50 are kept)."
    )
    announced: Announcements | None = Field(
        None, description="The last checkpoint, epoch and evaluation Events posted (their rate limit's memory)."
    )
    output_model: OutputModel | None = Field(None, description="The trained model.")
    start_time: KubeTime | None = Field(None, description="When the first attempt started, or the job last resumed.")
    completion_time: KubeTime | None = Field(None, description="When the job finished.")
    gpu_seconds: float | None = Field(None, ge=0.0, description="GPU time held, summed over attempts.")
    serving: ServingStatus | None = Field(
        None, description="The serving objects made for spec.serve once the job Succeeded, or why not."
    )
    estimate: CostEstimate | None = Field(
        None,
        description="GPU-hours the job should take: the trainer's token count at DataDownload x epochs over the "
        "template's declared tokens/s per GPU (or, without one, the job's measured tokens/s), times its GPUs.",
    )
    observed_generation: int | None = Field(None, ge=0, description="The spec generation last acted on.")
