"""An image pull still within its grace asks for a look when the grace ends: no event will announce it."""

from __future__ import annotations

from datetime import timedelta

from kubetune_operator.api.status import Phase
from kubetune_operator.observe.observation import Observation, RunState, observe
from kubetune_operator.settings import OperatorSettings

from .core_builders import SETTINGS, T0, batch_job, pod
from .machine_harness import Machine, requeue

SHORT = SETTINGS.model_copy(update={"image_pull_grace_seconds": 300.0})


def _pulling(*, at: float, settings: OperatorSettings = SHORT) -> Observation:
    backing_off = pod(
        conditions=[{"type": "PodScheduled", "status": "True"}],
        container_state={"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}},
        image="registry.example/kubetune/trainer:nope",
    )
    return observe(
        preflight_job=None,
        preflight_pods=[],
        attempt=1,
        attempt_job=batch_job(),
        attempt_pods=[backing_off],
        now=T0 + timedelta(seconds=at),
        settings=settings,
    )


def test_a_pull_within_its_grace_asks_to_be_looked_at_when_the_grace_ends() -> None:
    seen = _pulling(at=100)
    assert seen.trainer.state == RunState.PENDING
    assert seen.trainer.recheck_after == 200


def test_the_machine_requeues_for_the_rest_of_the_grace_then_fails_as_image_pull_failed() -> None:
    machine = Machine(settings=SHORT)
    machine.start_running()
    step = machine.tick(_pulling(at=100), at=100)
    assert step.status.phase == Phase.QUEUED
    assert requeue(step) == 200
    # The requeue fires with the same observation (no new pod event): the pull has now failed.
    step = machine.tick(_pulling(at=300), at=300)
    assert step.status.phase == Phase.FAILED
    assert step.status.error is not None
    assert step.status.error.reason == "ImagePullFailed"
