"""A Complete (or Failed) trainer Job whose pods' last updates lag: wait for the pod's Result, delete nothing.

Jobs and pods reach the operator on separate watches, so the batch Job's Complete can arrive while
a pod still looks running. A CI run of the e2e suite met it: the job succeeded, and the operator,
counting the lagging pod as holding a GPU, deleted the finished attempt and its pods' logs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kubetune_operator.api.status import Phase
from kubetune_operator.lifecycle.actions import DeleteAttempt
from kubetune_operator.observe.observation import Observation, RunState, observe
from kubetune_trainer.contract import ErrorClass, JobError, Outcome, OutputSummary, Result

from .core_builders import SETTINGS, T0, batch_job, pod, running, stamp, terminated
from .machine_harness import PASSED, Machine, requeue

GRACE = SETTINGS.result_grace_seconds
COMPLETE = [{"type": "Complete", "status": "True", "reason": "Completed", "lastTransitionTime": stamp(T0)}]
RESULT = Result(
    outcome=Outcome.SUCCEEDED,
    output=OutputSummary(uri="s3://models/support-bot", name="support-bot", files=3, bytes=10),
)


def _rank(index: int, *, done: bool) -> dict[str, Any]:
    if not done:
        return pod(index=index, phase="Running", container_state=running())
    result = RESULT if index == 0 else None
    return pod(index=index, phase="Succeeded", container_state=terminated(exit_code=0, result=result))


def _seen(pods: list[dict[str, Any]], *, at: float, job: dict[str, Any] | None = None) -> Observation:
    """Attempt 1's Job (by default a Complete one of 2 completions) and its pods, `at` seconds after T0."""
    return observe(
        preflight_job=None,
        preflight_pods=[],
        attempt=1,
        attempt_job=job or batch_job(completions=2, conditions=COMPLETE),
        attempt_pods=pods,
        now=T0 + timedelta(seconds=at),
        settings=SETTINGS,
    ).model_copy(update={"preflight": PASSED})


def test_rank_zero_lagging_is_still_finishing_and_holds_no_gpu() -> None:
    seen = _seen([_rank(0, done=False), _rank(1, done=True)], at=1)
    assert seen.trainer.state == RunState.RUNNING
    assert seen.trainer.live_pods == 0
    assert seen.trainer.recheck_after is not None
    assert 0 < seen.trainer.recheck_after <= GRACE


def test_another_rank_lagging_succeeds_with_rank_zeros_result_and_no_live_pod() -> None:
    seen = _seen([_rank(0, done=True), _rank(1, done=False)], at=1)
    assert seen.trainer.state == RunState.SUCCEEDED
    assert seen.trainer.result == RESULT
    assert seen.trainer.live_pods == 0


def test_past_the_grace_the_job_succeeds_on_the_jobs_word() -> None:
    seen = _seen([_rank(0, done=False), _rank(1, done=True)], at=GRACE + 1)
    assert seen.trainer.state == RunState.SUCCEEDED
    assert seen.trainer.result is None
    assert seen.trainer.error is None


def test_the_machine_waits_then_succeeds_with_the_output_model_and_deletes_no_pod() -> None:
    machine = Machine()
    machine.start_running()
    step = machine.tick(_seen([_rank(0, done=False), _rank(1, done=True)], at=1), at=1)
    assert step.status.phase == Phase.RUNNING
    assert requeue(step) is not None
    step = machine.tick(_seen([_rank(0, done=True), _rank(1, done=False)], at=2), at=2)
    assert step.status.phase == Phase.SUCCEEDED
    assert step.status.output_model is not None
    assert step.status.output_model.uri == "s3://models/support-bot"
    assert not [action for action in machine.actions if isinstance(action, DeleteAttempt)]


FAILED_AT_T0 = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": stamp(T0)}]
INVALID = Result(
    outcome=Outcome.FAILED,
    error=JobError(
        error_class=ErrorClass.INVALID_INPUT,
        reason="DataFileNotFound",
        message="spec.trainingFile: no such file",
        retryable=False,
    ),
)


FAILED_JOB = batch_job(conditions=FAILED_AT_T0)


def test_a_failed_job_whose_pod_still_looks_running_waits_for_the_pods_own_error() -> None:
    lagging = [pod(index=0, phase="Running", container_state=running())]
    seen = _seen(lagging, at=1, job=FAILED_JOB)
    assert seen.trainer.state == RunState.RUNNING  # not Crashed yet: the pod's Result may name the class
    assert seen.trainer.live_pods == 0
    assert seen.trainer.recheck_after is not None

    caught_up = [pod(index=0, phase="Failed", container_state=terminated(exit_code=2, result=INVALID))]
    seen = _seen(caught_up, at=2, job=FAILED_JOB)
    assert seen.trainer.state == RunState.FAILED
    assert seen.trainer.error is not None
    assert (seen.trainer.error.error_class, seen.trainer.error.retryable) == (ErrorClass.INVALID_INPUT, False)


def test_past_the_grace_a_failed_job_with_no_word_from_its_pod_is_crashed() -> None:
    seen = _seen([pod(index=0, phase="Running", container_state=running())], at=GRACE + 1, job=FAILED_JOB)
    assert seen.trainer.state == RunState.FAILED
    assert seen.trainer.error is not None
    assert seen.trainer.error.reason == "Crashed"
    assert seen.trainer.live_pods == 0
