"""What the client returns: Together's response shapes (snake_case, as its SDK), plus kubetune's own fields.

A script written against Together's `FinetuneResponse`, `FinetuneList`, `FinetuneListEvents`,
`FinetuneCheckpoint` and `FinetuneDownloadResult` reads the same attribute names here. Fields
Together has and kubetune lacks (price, queue depth) are absent rather than invented.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Shape(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FinetuneJobStatus(enum.StrEnum):
    """Together's job statuses, with kubetune's `suspended` (Together cannot pause a job)."""

    STATUS_PENDING = "pending"
    STATUS_QUEUED = "queued"
    STATUS_RUNNING = "running"
    STATUS_COMPRESSING = "compressing"
    STATUS_UPLOADING = "uploading"
    STATUS_SUSPENDED = "suspended"
    STATUS_CANCEL_REQUESTED = "cancel_requested"
    STATUS_CANCELLED = "cancelled"
    STATUS_ERROR = "error"
    STATUS_USER_ERROR = "user_error"
    STATUS_COMPLETED = "completed"


COMPLETED_STATUSES = frozenset(
    {
        FinetuneJobStatus.STATUS_ERROR,
        FinetuneJobStatus.STATUS_USER_ERROR,
        FinetuneJobStatus.STATUS_COMPLETED,
        FinetuneJobStatus.STATUS_CANCELLED,
    }
)


class FinetuneProgress(Shape):
    estimate_available: bool = Field(False, description="Whether seconds_remaining is an estimate.")
    seconds_remaining: float = Field(0, description="Estimated seconds until training ends.")


class TrainingType(Shape):
    type: Literal["Full", "Lora"] = Field(description="Full or Lora.")
    lora_r: int | None = Field(None, description="Adapter rank.")
    lora_alpha: int | None = Field(None, description="Adapter alpha.")
    lora_dropout: float | None = Field(None, description="Adapter dropout.")
    lora_trainable_modules: str | None = Field(None, description="Modules adapted, comma-separated.")


class FinetuneEvent(Shape):
    object: Literal["fine-tune-event"] = "fine-tune-event"
    created_at: str | None = Field(None, description="When the event was last seen (RFC 3339).")
    level: Literal["Info", "Warning"] | None = Field(None, description="Info or Warning.")
    message: str | None = Field(None, description="What happened.")
    type: str | None = Field(None, description="The Event's reason, e.g. CheckpointSaved or StageStarted.")
    count: int = Field(1, description="How many times Kubernetes saw it (kubetune's own).")


class FinetuneResponse(Shape):
    """One job, as Together's SDK shows it; `id` is the FineTuneJob's name."""

    id: str = Field(description="The FineTuneJob's name.")
    namespace: str = Field(description="Its namespace (kubetune's own).")
    uid: str | None = Field(None, description="metadata.uid (kubetune's own).")
    status: FinetuneJobStatus = Field(description="Together's status, mapped from phase and stage.")
    phase: str | None = Field(None, description="status.phase (kubetune's own).")
    stage: str | None = Field(None, description="status.stage (kubetune's own).")
    model: str | None = None
    from_hf_model: str | None = None
    hf_model_revision: str | None = None
    training_file: str | None = None
    validation_file: str | None = None
    output_name: str | None = Field(None, description="The trained model's name.")
    output_uri: str | None = Field(None, description="Where the trained model is (kubetune's own).")
    n_epochs: int | None = None
    n_checkpoints: int | None = None
    n_evals: int | None = None
    batch_size: int | Literal["max"] | None = None
    learning_rate: float | None = None
    warmup_ratio: float | None = None
    max_grad_norm: float | None = None
    weight_decay: float | None = None
    training_type: TrainingType | None = None
    train_on_inputs: bool | Literal["auto"] | None = None
    suffix: str | None = None
    from_checkpoint: str | None = None
    wandb_project_name: str | None = None
    wandb_name: str | None = None
    wandb_base_url: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    total_steps: int | None = None
    steps_completed: int | None = None
    epochs_completed: int | None = None
    evals_completed: int | None = None
    param_count: int | None = None
    progress: FinetuneProgress | None = None
    train_loss: float | None = Field(None, description="Last training loss (kubetune's own).")
    eval_loss: float | None = Field(None, description="Last evaluation loss (kubetune's own).")
    gpu_seconds: float | None = Field(None, description="GPU time held so far (kubetune's own).")
    error: str | None = Field(None, description="`<class>/<reason>: <message>` of a failed job (kubetune's own).")
    hint: str | None = Field(None, description="What to change, for a failed job (kubetune's own).")
    warnings: list[str] = Field(default_factory=list, description="`<reason>: <message>` (kubetune's own).")
    events: list[FinetuneEvent] | None = None
    raw: dict[str, Any] = Field(default_factory=dict, repr=False, description="The FineTuneJob as the API gave it.")


class FinetuneList(Shape):
    object: Literal["list"] = "list"
    data: list[FinetuneResponse] = Field(default_factory=list)


class FinetuneListEvents(Shape):
    object: Literal["list"] = "list"
    data: list[FinetuneEvent] = Field(default_factory=list)


class FinetuneCheckpoint(Shape):
    """Together's shape (type, timestamp, name) plus the step and where it is stored."""

    type: str = Field(description="Intermediate, Final, Final Merged or Final Adapter.")
    timestamp: str = Field(description="When it was written (RFC 3339).")
    name: str = Field(
        description="`<job>:<step>` for an intermediate checkpoint (what fromCheckpoint takes), else `<job>`."
    )
    step: int | None = Field(None, description="Optimizer step (kubetune's own).")
    epoch: float | None = Field(None, description="Epochs completed at this step (kubetune's own).")
    train_loss: float | None = Field(None, description="Training loss at this step (kubetune's own).")
    eval_loss: float | None = Field(None, description="Evaluation loss at this step, if one ran (kubetune's own).")
    location: str = Field(description="Where it is stored (kubetune's own).")


class FinetuneDeleteResponse(Shape):
    message: str


class FinetuneDownloadResult(Shape):
    object: Literal["local"] = "local"
    id: str = Field(description="The FineTuneJob's name.")
    checkpoint_step: int | None = Field(None, description="The step downloaded; None for the final model.")
    filename: str = Field(description="The folder written (a folder `from_pretrained` loads, not an archive).")
    size: int = Field(description="Bytes written.")
