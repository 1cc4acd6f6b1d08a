"""A retryable preflight failure (a hub 5xx, a lost pod) runs the preflight again, like an attempt."""

from __future__ import annotations

from collections.abc import Sequence

from kubetune_operator.api.status import ConditionStatus, ConditionType, Phase
from kubetune_operator.lifecycle.actions import Action, CreatePreflight, DeletePreflight
from kubetune_operator.observe.observation import Observation, RunObservation, RunState
from kubetune_trainer.contract import ErrorClass, JobError

from .machine_harness import PASSED, Machine, creates, reasons, requeue

HUB_DOWN = JobError(
    error_class=ErrorClass.INTERNAL,
    reason="HubUnavailable",
    message="huggingface.co answered 503",
    hint="nothing to change: it is retried",
    retryable=True,
)
FAILED = Observation(preflight=RunObservation(state=RunState.FAILED, error=HUB_DOWN, live_pods=0))
GONE = Observation()


def _preflights(step_actions: Sequence[Action]) -> int:
    return sum(1 for a in step_actions if isinstance(a, CreatePreflight))


def test_a_retryable_preflight_failure_runs_it_again_after_the_backoff_and_counts_it() -> None:
    machine = Machine(maxRetries=2)
    machine.tick()
    step = machine.tick(FAILED, at=10)
    assert step.status.phase == Phase.VALIDATING
    assert step.status.preflight_retries == 1
    assert step.status.error == HUB_DOWN
    assert DeletePreflight() in step.actions
    assert requeue(step) == 30
    assert machine.condition(ConditionType.VALIDATED).reason == "RetryBackoff"
    assert reasons(step.events) == ["Retrying"]
    assert "retry 1 of 2" in step.events[0].message

    assert _preflights(machine.tick(GONE, at=39).actions) == 0  # still backing off
    step = machine.tick(GONE, at=40)
    assert _preflights(step.actions) == 1
    assert step.status.error is None
    assert machine.condition(ConditionType.VALIDATED).status == ConditionStatus.UNKNOWN

    step = machine.tick(Observation(preflight=PASSED), at=50)
    assert creates(step) != []
    assert step.status.phase == Phase.QUEUED
    assert step.status.preflight_retries == 1


def test_the_old_preflight_job_goes_before_a_new_one_is_asked_for() -> None:
    machine = Machine()
    machine.tick()
    machine.tick(FAILED, at=10)
    step = machine.tick(FAILED, at=45)  # backoff over, but the failed Job is still listed
    assert DeletePreflight() in step.actions
    assert _preflights(step.actions) == 0
    assert _preflights(machine.tick(GONE, at=46).actions) == 1


def test_preflight_retries_stop_at_max_retries() -> None:
    machine = Machine(maxRetries=1)
    machine.tick()
    machine.tick(FAILED, at=10)
    machine.tick(GONE, at=40)
    step = machine.tick(FAILED, at=50)
    assert step.status.phase == Phase.FAILED
    assert step.status.error == HUB_DOWN
    assert reasons(step.events)[-2:] == ["RetriesExhausted", "HubUnavailable"]
    assert machine.condition(ConditionType.VALIDATED).reason == "PreflightFailed"
    assert creates(step) == []


def test_invalid_input_from_the_preflight_is_never_retried() -> None:
    refused = HUB_DOWN.model_copy(update={"error_class": ErrorClass.INVALID_INPUT, "retryable": False})
    machine = Machine(maxRetries=2)
    machine.tick()
    step = machine.tick(Observation(preflight=RunObservation(state=RunState.FAILED, error=refused)), at=10)
    assert step.status.phase == Phase.FAILED
    assert step.status.preflight_retries == 0
