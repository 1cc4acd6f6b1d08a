"""The one table that turns any exception a stage raises into a `JobError`.

Domain errors (`errors.TrainerError`) already know their class, reason and hint. Exceptions
from libraries are mapped here by what they mean for the user, not by where they came from:
an accelerator out of memory is CudaOOM, a failed computation RuntimeError, a configuration or
shape mismatch ValueError, and anything else Internal (retried, with the job UID to report).
Imports nothing heavy: torch is recognised by class name so this module loads without it.
"""

from __future__ import annotations

from .contract import ErrorClass, JobError, Stage
from .errors import TrainerError

EXIT_CODES: dict[ErrorClass | None, int] = {
    None: 0,
    ErrorClass.INTERNAL: 1,
    ErrorClass.INVALID_INPUT: 2,
    ErrorClass.VALUE_ERROR: 3,
    ErrorClass.RUNTIME_ERROR: 4,
    ErrorClass.CUDA_OOM: 5,
}
"""Process exit code per error class, so a shell (or `kubectl logs`) can tell them apart too."""

_CPU_OOM_MARKER = "DefaultCPUAllocator: can't allocate memory"


def exit_code_for(error: JobError | None) -> int:
    return EXIT_CODES[None if error is None else error.error_class]


def classify(exc: BaseException, *, stage: Stage | None, job_uid: str) -> JobError:
    """The user-facing error for `exc`, raised during `stage`."""
    if isinstance(exc, TrainerError):
        return exc.to_job_error(stage)
    names = {cls.__name__ for cls in type(exc).__mro__}
    detail = f"{type(exc).__name__}: {exc}"
    if "OutOfMemoryError" in names:
        return JobError(
            error_class=ErrorClass.CUDA_OOM,
            reason="OutOfMemory",
            message=detail,
            hint="Lower hyperparameters.batchSize, enable lora or gradient checkpointing, or pick a larger template.",
            stage=stage,
        )
    if "SafetensorError" in names:
        return JobError(
            error_class=ErrorClass.RUNTIME_ERROR,
            reason="CorruptWeights",
            message=detail,
            hint="Verify the checkpoint is complete: re-upload the .safetensors files of the model repo.",
            stage=stage,
        )
    if isinstance(exc, RuntimeError) and _CPU_OOM_MARKER in str(exc):
        return JobError(
            error_class=ErrorClass.CUDA_OOM,
            reason="HostOutOfMemory",
            message=detail,
            hint="Give the pod more memory (the template's resources), lower hyperparameters.batchSize or enable lora.",
            stage=stage,
        )
    if isinstance(exc, ValueError | AssertionError):
        return JobError(
            error_class=ErrorClass.VALUE_ERROR,
            reason="InvalidConfiguration",
            message=detail,
            hint="Check the model is a CausalLM and the hyperparameters are in range.",
            stage=stage,
        )
    if isinstance(exc, RuntimeError | ArithmeticError | IndexError):
        return JobError(
            error_class=ErrorClass.RUNTIME_ERROR,
            reason="ComputationFailed",
            message=detail,
            hint="Verify the checkpoint is complete and the tokenizer matches the model.",
            stage=stage,
        )
    return JobError(
        error_class=ErrorClass.INTERNAL,
        reason="Unexpected",
        message=detail,
        hint=f"Retried automatically; if it persists, report it with the job UID {job_uid}.",
        stage=stage,
        retryable=True,
    )
