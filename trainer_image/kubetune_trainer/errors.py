"""The trainer's domain errors: each one knows its error class, reason code and hint.

Code that finds a problem raises one of these with a message naming what is wrong and a hint naming
the field and the fix. Exceptions from libraries (torch, safetensors, huggingface_hub) are translated
into these classes in one place, the classification table, never ad hoc.
"""

from __future__ import annotations

from typing import ClassVar

from .contract import ErrorClass, JobError, Stage


class TrainerError(Exception):
    """A failure with a user-facing class, a CamelCase reason code and what to change."""

    error_class: ClassVar[ErrorClass] = ErrorClass.INTERNAL
    retryable_by_default: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        hint: str | None = None,
        field: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.hint = hint
        self.field = field
        self.retryable = self.retryable_by_default if retryable is None else retryable

    def to_job_error(self, stage: Stage | None = None) -> JobError:
        return JobError(
            error_class=self.error_class,
            reason=self.reason,
            message=self.message,
            hint=self.hint,
            stage=stage,
            retryable=self.retryable,
        )


class InvalidInput(TrainerError):
    """Found before training: a model, revision, data file or URI the job cannot use as given."""

    error_class = ErrorClass.INVALID_INPUT


class CheckpointInvalid(TrainerError):
    """A checkpoint or hyperparameter combination that does not hold together (shapes, config, ranges)."""

    error_class = ErrorClass.VALUE_ERROR


class ComputationFailed(TrainerError):
    """PyTorch could not compute: corrupt weights, a non-finite loss."""

    error_class = ErrorClass.RUNTIME_ERROR


class OutOfMemory(TrainerError):
    """The accelerator ran out of memory."""

    error_class = ErrorClass.CUDA_OOM


class InfrastructureFailure(TrainerError):
    """The world failed, not the job: hub or storage errors, timeouts, upload failures. Retried."""

    error_class = ErrorClass.INTERNAL
    retryable_by_default = True
