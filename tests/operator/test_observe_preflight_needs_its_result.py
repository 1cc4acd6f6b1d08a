"""A Complete preflight Job passes only with its pod's Result: the Job and pod watches race."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kubetune_operator.api.status import Phase
from kubetune_operator.observe.observation import Observation, RunState, observe
from kubetune_trainer.contract import ErrorClass, Outcome, Result

from .core_builders import SETTINGS, T0, batch_job, pod, running, stamp, terminated
from .machine_harness import FACTS, Machine, creates, requeue

GRACE = SETTINGS.result_grace_seconds
COMPLETE = [{"type": "Complete", "status": "True", "reason": "Completed", "lastTransitionTime": stamp(T0)}]


def _preflight(pods: list[dict[str, Any]], *, at: float) -> Observation:
    return observe(
        preflight_job=batch_job(conditions=COMPLETE),
        preflight_pods=pods,
        attempt=0,
        attempt_job=None,
        attempt_pods=[],
        now=T0 + timedelta(seconds=at),
        settings=SETTINGS,
    )


def test_a_complete_job_whose_pod_still_shows_running_is_still_finishing() -> None:
    seen = _preflight([pod(phase="Running", container_state=running())], at=1)
    assert seen.preflight.state == RunState.RUNNING
    assert seen.preflight.recheck_after is not None
    assert 0 < seen.preflight.recheck_after <= GRACE


def test_once_the_termination_message_is_seen_the_preflight_passed_with_its_facts() -> None:
    passed = Result(outcome=Outcome.SUCCEEDED, model=FACTS)
    seen = _preflight([pod(phase="Succeeded", container_state=terminated(exit_code=0, result=passed))], at=1)
    assert seen.preflight.state == RunState.SUCCEEDED
    assert seen.model_facts == FACTS


def test_past_the_grace_without_a_result_it_is_internal_and_retryable() -> None:
    seen = _preflight([pod(phase="Running", container_state=running())], at=GRACE + 1)
    assert seen.preflight.state == RunState.FAILED
    error = seen.preflight.error
    assert error is not None
    assert (error.error_class, error.reason, error.retryable) == (ErrorClass.INTERNAL, "PreflightResultMissing", True)
    assert f"{GRACE:.0f}s" in error.message


def test_a_preflight_pod_that_ended_without_a_message_fails_at_once() -> None:
    seen = _preflight([pod(phase="Succeeded", container_state=terminated(exit_code=0))], at=1)
    assert seen.preflight.state == RunState.FAILED
    assert seen.preflight.error is not None
    assert "without a termination message" in seen.preflight.error.message


def test_the_machine_waits_for_the_result_instead_of_starting_without_the_model_facts() -> None:
    machine = Machine()
    machine.tick()
    step = machine.tick(_preflight([pod(phase="Running", container_state=running())], at=1), at=1)
    assert step.status.phase == Phase.VALIDATING
    assert creates(step) == []
    wait = requeue(step)
    assert wait is not None
    assert wait <= GRACE
    passed = Result(outcome=Outcome.SUCCEEDED, model=FACTS)
    step = machine.tick(
        _preflight([pod(phase="Succeeded", container_state=terminated(exit_code=0, result=passed))], at=2), at=2
    )
    assert creates(step) != []
    assert step.status.resolved is not None
    assert step.status.resolved.revision_sha == FACTS.revision_sha
