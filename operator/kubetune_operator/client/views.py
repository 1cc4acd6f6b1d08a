"""A FineTuneJob (and its Events) as the API returns them -> Together's shapes. Pure."""

from __future__ import annotations

from typing import Any

from ..api.status import Phase
from .shapes import (
    FinetuneCheckpoint,
    FinetuneEvent,
    FinetuneJobStatus,
    FinetuneProgress,
    FinetuneResponse,
    TrainingType,
)

Json = dict[str, Any]
ADAPTER_DIR = "adapter"
"""Where a merged LoRA output keeps its adapter (the trainer's stages.save.ADAPTER_DIR)."""


def together_status(job: Json) -> FinetuneJobStatus:
    """Together's status for a FineTuneJob: its phase, its stage while running, a cancel not yet seen."""
    spec, status = job.get("spec", {}), job.get("status", {})
    phase, stage = status.get("phase"), status.get("stage")
    if phase == Phase.CANCELLED:
        return FinetuneJobStatus.STATUS_CANCELLED
    if phase == Phase.SUCCEEDED:
        return FinetuneJobStatus.STATUS_COMPLETED
    if phase == Phase.FAILED:
        invalid = status.get("error", {}).get("class") == "InvalidInput"
        return FinetuneJobStatus.STATUS_USER_ERROR if invalid else FinetuneJobStatus.STATUS_ERROR
    if spec.get("cancel"):
        return FinetuneJobStatus.STATUS_CANCEL_REQUESTED
    if phase == Phase.SUSPENDED:
        return FinetuneJobStatus.STATUS_SUSPENDED
    if phase == Phase.QUEUED:
        return FinetuneJobStatus.STATUS_QUEUED
    if phase == Phase.RUNNING:
        if stage == "Saving":
            return FinetuneJobStatus.STATUS_COMPRESSING
        if stage == "Upload":
            return FinetuneJobStatus.STATUS_UPLOADING
        return FinetuneJobStatus.STATUS_RUNNING
    return FinetuneJobStatus.STATUS_PENDING


def job_response(job: Json, *, events: list[FinetuneEvent] | None = None) -> FinetuneResponse:
    metadata, spec, status = job.get("metadata", {}), job.get("spec", {}), job.get("status", {})
    resolved = status.get("resolved") or {}
    asked = spec.get("hyperparameters") or {}
    runs = resolved.get("hyperparameters") or {}
    progress = status.get("progress") or {}
    wandb = spec.get("wandb") or {}
    error = status.get("error")
    output = status.get("outputModel") or {}

    def hyper(key: str) -> Any:
        return runs.get(key, asked.get(key))

    lora = resolved.get("lora")
    if lora is not None:
        training_type = TrainingType(
            type="Lora",
            lora_r=lora.get("r"),
            lora_alpha=lora.get("alpha"),
            lora_dropout=lora.get("dropout"),
            lora_trainable_modules=",".join(lora.get("targetModules", [])) or None,
        )
    elif resolved.get("hyperparameters") is not None:
        training_type = TrainingType(type="Full")
    else:
        training_type = None
    eta = progress.get("etaSeconds")
    epoch = progress.get("epoch")
    return FinetuneResponse(
        id=metadata.get("name", ""),
        namespace=metadata.get("namespace", ""),
        uid=metadata.get("uid"),
        status=together_status(job),
        phase=status.get("phase"),
        stage=status.get("stage"),
        model=spec.get("model"),
        from_hf_model=spec.get("fromHfModel") or resolved.get("modelRepo"),
        hf_model_revision=resolved.get("revisionSha") or spec.get("hfModelRevision"),
        training_file=spec.get("trainingFile"),
        validation_file=spec.get("validationFile"),
        output_name=output.get("name"),
        output_uri=output.get("uri"),
        n_epochs=hyper("nEpochs"),
        n_checkpoints=hyper("nCheckpoints"),
        n_evals=hyper("nEvals"),
        batch_size=hyper("batchSize"),
        learning_rate=hyper("learningRate"),
        warmup_ratio=hyper("warmupRatio"),
        max_grad_norm=hyper("maxGradNorm"),
        weight_decay=hyper("weightDecay"),
        training_type=training_type,
        train_on_inputs=hyper("trainOnInputs"),
        suffix=spec.get("suffix"),
        from_checkpoint=spec.get("fromCheckpoint"),
        wandb_project_name=wandb.get("project"),
        wandb_name=wandb.get("name"),
        wandb_base_url=wandb.get("baseUrl"),
        created_at=metadata.get("creationTimestamp"),
        updated_at=progress.get("heartbeatTime") or status.get("completionTime") or metadata.get("creationTimestamp"),
        started_at=status.get("startTime"),
        completed_at=status.get("completionTime"),
        total_steps=progress.get("totalSteps"),
        steps_completed=progress.get("step"),
        epochs_completed=int(epoch) if epoch is not None else None,
        param_count=resolved.get("parameters"),
        progress=FinetuneProgress(estimate_available=eta is not None, seconds_remaining=float(eta or 0)),
        train_loss=progress.get("loss"),
        eval_loss=progress.get("evalLoss"),
        gpu_seconds=status.get("gpuSeconds"),
        error=f"{error['class']}/{error['reason']}: {error['message']}" if error else None,
        hint=error.get("hint") if error else None,
        warnings=[f"{w['reason']}: {w['message']}" for w in status.get("warnings", [])],
        events=events,
        raw=job,
    )


def event_of(event: Json) -> FinetuneEvent:
    when = event.get("lastTimestamp") or event.get("eventTime") or event.get("metadata", {}).get("creationTimestamp")
    return FinetuneEvent(
        created_at=when,
        level="Warning" if event.get("type") == "Warning" else "Info",
        message=event.get("message"),
        type=event.get("reason"),
        count=int(event.get("count") or 1),
    )


def sorted_events(events: list[Json]) -> list[FinetuneEvent]:
    """Oldest first, as `kubectl events` prints them."""
    shaped = [event_of(e) for e in events]
    return sorted(shaped, key=lambda e: e.created_at or "")


def checkpoints_of(job: Json) -> list[FinetuneCheckpoint]:
    """The intermediate checkpoints in status, then the final model once there is one; newest first, as Together."""
    name = job.get("metadata", {}).get("name", "")
    status = job.get("status", {})
    found = [
        FinetuneCheckpoint(
            type=record.get("type", "Intermediate"),
            timestamp=record["time"],
            name=f"{name}:{record['step']}",
            step=record["step"],
            epoch=record.get("epoch"),
            train_loss=record.get("trainLoss"),
            eval_loss=record.get("evalLoss"),
            location=record["uri"],
        )
        for record in status.get("checkpoints", [])
    ]
    output = status.get("outputModel")
    if output and status.get("phase") == Phase.SUCCEEDED:
        when = status.get("completionTime") or ""
        lora = (status.get("resolved") or {}).get("lora")
        uri = output["uri"]
        if lora is None:
            found.append(FinetuneCheckpoint(type="Final", timestamp=when, name=name, location=uri))
        elif lora.get("merge"):
            found.append(FinetuneCheckpoint(type="Final Merged", timestamp=when, name=name, location=uri))
            adapter = FinetuneCheckpoint(
                type="Final Adapter", timestamp=when, name=name, location=f"{uri.rstrip('/')}/{ADAPTER_DIR}"
            )
            found.append(adapter)
        else:
            found.append(FinetuneCheckpoint(type="Final Adapter", timestamp=when, name=name, location=uri))
    return sorted(found, key=lambda c: (c.timestamp, c.step if c.step is not None else 1 << 62), reverse=True)
