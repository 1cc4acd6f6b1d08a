"""Condition reasons and Events: the CamelCase vocabulary of `status.conditions` and `kubectl describe`.

Every reason the operator writes is a constant here, so the status a user reads, the Events
they see and the tests all spell it one way.
"""

from __future__ import annotations

import enum
from datetime import datetime

from pydantic import Field

from kubetune_trainer.contract import WireModel

from .status import Condition, ConditionStatus, ConditionType


class Reason(enum.StrEnum):
    """Condition and Event reasons written by the operator (the trainer's own reasons pass through)."""

    # Validation and resolution.
    TEMPLATE_NOT_FOUND = "TemplateNotFound"
    INVALID_SPEC = "InvalidSpec"
    TEMPLATE_LIMIT_EXCEEDED = "TemplateLimitExceeded"
    PREFLIGHT_RUNNING = "PreflightRunning"
    PREFLIGHT_PASSED = "PreflightPassed"
    PREFLIGHT_FAILED = "PreflightFailed"
    PREFLIGHT_SKIPPED = "PreflightSkipped"
    PREFLIGHT_RESULT_MISSING = "PreflightResultMissing"
    # Scheduling.
    ATTEMPT_CREATED = "AttemptCreated"
    AWAITING_ADMISSION = "AwaitingAdmission"
    UNSCHEDULABLE = "Unschedulable"
    PODS_SCHEDULED = "PodsScheduled"
    RETRY_BACKOFF = "RetryBackoff"
    PREVIOUS_ATTEMPT_STOPPING = "PreviousAttemptStopping"
    BUDGET_EXCEEDED = "BudgetExceeded"
    BUDGET_AVAILABLE = "BudgetAvailable"
    RESIZED = "Resized"
    RESIZE_REFUSED = "ResizeRefused"
    # Running and ending.
    PODS_RUNNING = "PodsRunning"
    NOT_RUNNING = "NotRunning"
    COMPLETED = "Completed"
    STAGE_STARTED = "StageStarted"
    STAGE_FINISHED = "StageFinished"
    RETRYING = "Retrying"
    RETRIES_EXHAUSTED = "RetriesExhausted"
    # Training progress (rate-limited: see lifecycle/progress_record.py).
    CHECKPOINT_SAVED = "CheckpointSaved"
    EPOCH_COMPLETED = "EpochCompleted"
    EVALUATION_COMPLETED = "EvaluationCompleted"
    ESTIMATED = "Estimated"
    # What the operator could not do for the user (item 8: said in status.warnings, never only a log line).
    EVENT_NOT_POSTED = "EventNotPosted"
    # Failures the operator itself observes.
    IMAGE_PULL_FAILED = "ImagePullFailed"
    SECRET_NOT_READABLE = "SecretNotReadable"
    CONTAINER_CONFIG_INVALID = "ContainerConfigInvalid"
    PREEMPTED = "Preempted"
    CRASHED = "Crashed"
    STALLED = "Stalled"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    # Suspension and cleanup.
    SUSPENDED = "Suspended"
    RESUMED = "Resumed"
    CANCELLED = "Cancelled"
    TTL_EXPIRED = "TTLExpired"
    # Serving hand-off (spec.serve).
    SERVING_CREATED = "ServingCreated"
    SERVING_READY = "ServingReady"
    SERVING_NOT_CREATED = "ServingNotCreated"


class EventType(enum.StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


class EventNote(WireModel):
    """An Event to post on the FineTuneJob: one per transition, never per progress tick."""

    type: EventType = Field(description="Normal or Warning.")
    reason: str = Field(min_length=1, max_length=128, description="CamelCase reason.")
    message: str = Field(max_length=1024, description="What happened, and for failures what to change.")

    @classmethod
    def normal(cls, reason: str, message: str) -> EventNote:
        return cls(type=EventType.NORMAL, reason=reason, message=_fit(message))

    @classmethod
    def warning(cls, reason: str, message: str) -> EventNote:
        return cls(type=EventType.WARNING, reason=reason, message=_fit(message))


def _fit(message: str, limit: int = 1024) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


def find_condition(conditions: list[Condition], kind: ConditionType) -> Condition | None:
    return next((c for c in conditions if c.type == kind), None)


def with_condition(
    conditions: list[Condition],
    kind: ConditionType,
    state: ConditionStatus,
    *,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
    restart_clock: bool = False,
) -> list[Condition]:
    """`conditions` with `kind` set; lastTransitionTime moves only when the status changes.

    `restart_clock` moves it anyway: a reason whose wait is counted from lastTransitionTime
    (RetryBackoff) starts its clock now, even when the status was already False.
    Conditions keep a fixed order (ConditionType's), so an unchanged status serialises the same.
    """
    current = find_condition(conditions, kind)
    kept = current is not None and current.status == state and not restart_clock
    changed_at = current.last_transition_time if current is not None and kept else now
    updated = Condition(
        type=kind,
        status=state,
        reason=reason,
        message=message,
        last_transition_time=changed_at,
        observed_generation=generation,
    )
    others = {c.type: c for c in conditions if c.type != kind}
    others[kind] = updated
    return [others[t] for t in ConditionType if t in others]
