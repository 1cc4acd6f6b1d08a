"""kubetune_oldest_queued_job_age_seconds: how long the longest-waiting Queued job has waited.

The KubetuneJobStuckQueued alert reads it. The wait is read from each job's status (its Scheduled
condition's lastTransitionTime), so a restarted operator reports the same age; no series is per job.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from kubetune_operator.controller.bookkeeping import record_step
from kubetune_operator.metrics import OperatorMetrics
from kubetune_operator.observe.observation import Observation, RunState

from ..operator.core_builders import T0
from ..operator.machine_harness import PASSED, Machine, attempt_seen

AGE = "kubetune_oldest_queued_job_age_seconds"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def at(self, seconds: float) -> datetime:
        self.now = T0 + timedelta(seconds=seconds)
        return self.now

    def __call__(self) -> datetime:
        return self.now


def _tick(metrics: OperatorMetrics, key: tuple[str, str], machine: Machine, seen: Observation, *, at: float) -> None:
    old = machine.status
    step = machine.tick(seen, at=at)
    record_step(metrics, key, old=old, step=step)


def _queue(metrics: OperatorMetrics, key: tuple[str, str], *, at: float) -> Machine:
    """A job whose preflight passed at `at`: attempt 1 created, waiting for its pods."""
    machine = Machine()
    _tick(metrics, key, machine, Observation(), at=at)
    _tick(metrics, key, machine, Observation(preflight=PASSED), at=at)
    assert machine.status.phase == "Queued"
    return machine


def test_the_age_is_that_of_the_longest_wait_and_zero_when_nothing_waits() -> None:
    clock = Clock()
    metrics = OperatorMetrics(clock=clock)
    sample = metrics.registry.get_sample_value
    assert sample(AGE) == 0

    first = _queue(metrics, ("ml", "first"), at=0)
    _queue(metrics, ("ml", "second"), at=300)
    clock.at(600)
    assert sample(AGE) == 600

    # Unschedulable keeps waiting from when the attempt was created, not from the new message.
    _tick(
        metrics,
        ("ml", "first"),
        first,
        attempt_seen(1, RunState.UNSCHEDULABLE, message="0/3 nodes have nvidia.com/gpu"),
        at=700,
    )
    clock.at(900)
    assert sample(AGE) == 900

    _tick(metrics, ("ml", "first"), first, attempt_seen(1, RunState.RUNNING), at=900)
    assert sample(AGE) == 600, "the first job runs: the second has waited 600 s"

    metrics.job_phase(("ml", "second"), None)  # deleted
    assert sample(AGE) == 0
    assert metrics.registry.get_sample_value("kubetune_jobs", {"phase": "Queued"}) == 0


def test_a_restarted_operator_reports_the_same_age_from_the_status() -> None:
    clock = Clock()
    before = OperatorMetrics(clock=clock)
    machine = _queue(before, ("ml", "waiting"), at=0)

    after = OperatorMetrics(clock=clock)  # a new process: its first pass reads the stored status
    _tick(after, ("ml", "waiting"), machine, attempt_seen(1, RunState.UNSCHEDULABLE, message="no GPU"), at=1200)
    clock.at(1800)
    assert after.registry.get_sample_value(AGE) == 1800
