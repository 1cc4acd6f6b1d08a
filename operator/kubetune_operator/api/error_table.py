"""The operator's one error table: reason -> class, retryable, hint, for every failure the operator finds.

The trainer has its own table (`kubetune_trainer.classify.RULES`) for the exceptions its stages
raise; this one covers what only the operator sees: pods (the kubelet's and the scheduler's
words), batch Jobs, the preflight's missing Result, stalls, deadlines and invalid specs. Each
site names a reason and says what happened; whether it is retried and what to change come from
here alone, so a reason means the same thing wherever it is found.

The two tables share the vocabulary of the reasons both can meet: a pod out of host memory is
CudaOOM/HostOutOfMemory (`contract.HOST_OUT_OF_MEMORY`) whether the trainer caught a MemoryError
or the kubelet OOMKilled it; a pod taken away is Internal/Preempted, retried, as the trainer's
SIGTERM Result says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kubetune_trainer.contract import HOST_OUT_OF_MEMORY, HOST_OUT_OF_MEMORY_HINT, ErrorClass, JobError, Stage

from .conditions import Reason


@dataclass(frozen=True)
class OperatorRule:
    """One row: the class a user sees, whether a new attempt may help, and what to change.

    `hint` may name `{uid}` (the FineTuneJob's) and `{image}` (the trainer image); the site gives them.
    """

    error_class: ErrorClass
    retryable: bool
    hint: str


_REPORT = "report FineTuneJob UID {uid} if it persists"

RULES: Mapping[str, OperatorRule] = {
    # Pods and Jobs, as the kubelet, the scheduler and the Job controller leave them.
    Reason.CRASHED: OperatorRule(ErrorClass.INTERNAL, True, f"check the pods' logs; {_REPORT}"),
    Reason.PREEMPTED: OperatorRule(
        ErrorClass.INTERNAL, True, "nothing to change: the job resumes from its newest checkpoint on a new attempt"
    ),
    HOST_OUT_OF_MEMORY: OperatorRule(ErrorClass.CUDA_OOM, False, HOST_OUT_OF_MEMORY_HINT),
    Reason.IMAGE_PULL_FAILED: OperatorRule(
        ErrorClass.INTERNAL, False, "check the image name and tag exist and the nodes can reach its registry: {image}"
    ),
    Reason.CONTAINER_CONFIG_INVALID: OperatorRule(
        ErrorClass.INTERNAL,
        False,
        "check the trainer image and the template's pod settings; `kubectl describe pod` shows more",
    ),
    Reason.SECRET_NOT_READABLE: OperatorRule(
        ErrorClass.INVALID_INPUT,
        False,
        "create the Secret with that key in the job's namespace, or fix hfTokenSecretRef / wandb.apiKeySecretRef",
    ),
    # The operator's own findings.
    Reason.PREFLIGHT_RESULT_MISSING: OperatorRule(
        ErrorClass.INTERNAL, True, "nothing to change if it passes on a retry; else check the preflight pod's logs"
    ),
    Reason.PREFLIGHT_FAILED: OperatorRule(ErrorClass.INTERNAL, False, _REPORT),
    Reason.STALLED: OperatorRule(
        ErrorClass.INTERNAL,
        True,
        f"a step took longer than the heartbeat threshold; the job resumes from its newest checkpoint; {_REPORT}",
    ),
    Reason.DEADLINE_EXCEEDED: OperatorRule(
        ErrorClass.INTERNAL, False, "raise spec.activeDeadlineSeconds, or train less (nEpochs, data) per job"
    ),
    Reason.INVALID_SPEC: OperatorRule(
        ErrorClass.INVALID_INPUT,
        False,
        "fix the fields listed; `kubetune validate job.yaml` shows them before `kubectl apply`",
    ),
    # Retryable: the job proceeds by itself once its template exists (the error is cleared then).
    Reason.TEMPLATE_NOT_FOUND: OperatorRule(
        ErrorClass.INVALID_INPUT,
        True,
        "create the BaseModelTemplate (`kubectl get bmt` lists those installed) or set spec.model to one of "
        "them; the job proceeds by itself once its template exists",
    ),
    Reason.TEMPLATE_LIMIT_EXCEEDED: OperatorRule(
        ErrorClass.INVALID_INPUT, False, "change the fields listed, or name a template whose limits allow them"
    ),
}


def operator_error(
    reason: str, message: str, *, stage: Stage | None = None, uid: str = "", image: str = ""
) -> JobError:
    """The JobError for `reason`, found by the operator: class, retryable and hint from `RULES`."""
    rule = RULES[reason]
    return JobError(
        error_class=rule.error_class,
        reason=str(reason),
        message=message,
        hint=rule.hint.format(uid=uid or "<metadata.uid>", image=image),
        stage=stage,
        retryable=rule.retryable,
    )
