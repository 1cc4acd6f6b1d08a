"""Each row of the observation table, as the status and Events a user sees (pure level)."""

from __future__ import annotations

from kubetune_operator.api.conditions import Reason
from kubetune_operator.api.status import ConditionStatus, ConditionType, Phase
from kubetune_operator.lifecycle.actions import CreateAttempt, DeleteAttempt
from kubetune_operator.lifecycle.transitions import Step
from kubetune_operator.observe.observation import Observation, RunObservation, RunState
from kubetune_trainer.contract import ErrorClass, JobError, Outcome, Result, Stage

from .machine_harness import Machine, attempt_seen, creates, reasons, requeue


def _error(error_class: ErrorClass, reason: str, *, retryable: bool, hint: str | None = None) -> JobError:
    return JobError(
        error_class=error_class, reason=reason, message=f"{reason} happened", hint=hint, retryable=retryable
    )


def _failed_with(error: JobError) -> tuple[Machine, Step]:
    machine = Machine()
    machine.start_running()
    step = machine.tick(attempt_seen(1, RunState.FAILED, error=error, live_pods=1), at=100)
    return machine, step


def test_unschedulable_pods_keep_the_job_queued_with_the_scheduler_message_and_one_warning() -> None:
    machine = Machine()
    machine.tick()
    machine.tick(
        Observation(preflight=RunObservation(state=RunState.SUCCEEDED, result=Result(outcome=Outcome.SUCCEEDED)))
    )
    message = "0/12 nodes are available: 12 Insufficient nvidia.com/gpu."
    step = machine.tick(attempt_seen(1, RunState.UNSCHEDULABLE, message=message), at=5)
    assert step.status.phase == Phase.QUEUED
    scheduled = machine.condition(ConditionType.SCHEDULED)
    assert (scheduled.status, scheduled.reason, scheduled.message) == (ConditionStatus.FALSE, "Unschedulable", message)
    assert [(e.type, e.reason, e.message) for e in step.events] == [("Warning", "Unschedulable", message)]
    again = machine.tick(attempt_seen(1, RunState.UNSCHEDULABLE, message=message), at=60)
    assert again.events == []


def test_an_image_pull_failure_fails_the_job_and_frees_the_pods() -> None:
    machine, _ = _failed_with(_error(ErrorClass.INTERNAL, Reason.IMAGE_PULL_FAILED, retryable=False))
    status = machine.status
    assert status.phase == Phase.FAILED
    assert status.error is not None
    assert (status.error.error_class, status.error.reason) == (ErrorClass.INTERNAL, "ImagePullFailed")
    assert DeleteAttempt(attempt=1) in machine.actions
    assert machine.condition(ConditionType.FAILED).reason == "ImagePullFailed"


def test_a_missing_secret_fails_as_invalid_input_without_retry() -> None:
    machine, _ = _failed_with(_error(ErrorClass.INVALID_INPUT, Reason.SECRET_NOT_READABLE, retryable=False))
    assert machine.status.phase == Phase.FAILED
    assert machine.status.error is not None
    assert machine.status.error.error_class == ErrorClass.INVALID_INPUT
    assert [a for a in machine.actions if isinstance(a, CreateAttempt) and a.attempt > 1] == []


def test_host_out_of_memory_fails_with_its_hint_in_the_event() -> None:
    hint = "raise the template's resources.memory"
    machine, _ = _failed_with(_error(ErrorClass.CUDA_OOM, "HostOutOfMemory", retryable=False, hint=hint))
    assert machine.status.phase == Phase.FAILED
    failure = machine.events[-1]
    assert (failure.type, failure.reason) == ("Warning", "HostOutOfMemory")
    assert hint in failure.message


def test_preemption_is_retried() -> None:
    machine, _ = _failed_with(_error(ErrorClass.INTERNAL, Reason.PREEMPTED, retryable=True))
    assert machine.status.phase == Phase.QUEUED
    assert machine.condition(ConditionType.SCHEDULED).reason == "RetryBackoff"
    assert "Retrying" in reasons(machine.events)


def test_the_trainer_result_class_decides_cuda_oom_is_not_retried() -> None:
    machine, _ = _failed_with(_error(ErrorClass.CUDA_OOM, "CudaOutOfMemory", retryable=False, hint="lower batchSize"))
    assert machine.status.phase == Phase.FAILED
    assert machine.status.error is not None
    assert machine.status.error.error_class == ErrorClass.CUDA_OOM


def test_a_crash_without_a_message_is_retried_as_internal() -> None:
    machine, step = _failed_with(_error(ErrorClass.INTERNAL, Reason.CRASHED, retryable=True))
    assert machine.status.phase == Phase.QUEUED
    assert machine.status.error is not None
    assert machine.status.error.reason == "Crashed"
    assert requeue(step) == 30


def test_the_failed_stage_is_recorded_in_the_error() -> None:
    machine = Machine()
    machine.start_running()
    machine.trainer_reports(Stage.TRAINING, done=(Stage.DATA_DOWNLOAD, Stage.INITIALIZATION))
    machine.tick(
        attempt_seen(1, RunState.FAILED, error=_error(ErrorClass.RUNTIME_ERROR, "NonFiniteLoss", retryable=False))
    )
    assert machine.status.error is not None
    assert machine.status.error.stage == Stage.TRAINING
    assert creates(machine.tick(attempt_seen(1, RunState.FAILED), at=10)) == []
