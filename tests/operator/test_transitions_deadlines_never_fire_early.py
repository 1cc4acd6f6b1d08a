"""Status times are stored to the whole second; a deadline counted from one must never fire early.

The machine here stores and reads back its status through the wire, as the shell does, and
each step happens at a fractional second, as in a cluster.
"""

from __future__ import annotations

from kubetune_operator.api.status import Phase
from kubetune_operator.lifecycle.actions import DeleteFineTuneJob
from kubetune_operator.observe.observation import RunState
from kubetune_trainer.contract import ErrorClass, JobError

from .machine_harness import Machine, attempt_seen, creates, requeue, succeeded_result

PREEMPTED = JobError(error_class=ErrorClass.INTERNAL, reason="Preempted", message="node drained", retryable=True)


def test_active_deadline_counts_from_the_real_start_not_the_stored_second() -> None:
    machine = Machine(activeDeadlineSeconds=1)
    machine.start_running(at=0.7)  # attempt 1 created 0.7 s past a whole second
    step = machine.tick(attempt_seen(1, RunState.RUNNING), at=1.5)  # 0.8 s after the real start
    assert step.status.phase == Phase.RUNNING
    wait = requeue(step)
    assert wait is not None
    assert 1.5 + wait >= 1.7
    assert machine.tick(attempt_seen(1, RunState.RUNNING), at=2.0).status.phase == Phase.FAILED


def test_ttl_after_finished_counts_from_the_real_completion() -> None:
    machine = Machine(ttlSecondsAfterFinished=1)
    machine.start_running()
    step = machine.tick(attempt_seen(1, RunState.SUCCEEDED, result=succeeded_result()), at=10.6)
    wait = requeue(step)
    assert wait is not None
    assert wait >= 1.0
    step = machine.tick(attempt_seen(1, RunState.SUCCEEDED), at=11.5)  # 0.9 s after it finished
    assert DeleteFineTuneJob() not in step.actions
    assert DeleteFineTuneJob() in machine.tick(attempt_seen(1, RunState.SUCCEEDED), at=12.0).actions


def test_a_retry_backoff_is_never_cut_short() -> None:
    machine = Machine()
    machine.start_running()
    step = machine.tick(attempt_seen(1, RunState.FAILED, error=PREEMPTED, live_pods=1), at=100.4)
    wait = requeue(step)
    assert wait is not None
    assert wait >= 30
    assert creates(machine.tick(attempt_seen(1, RunState.ABSENT), at=130.3)) == []  # 29.9 s after the failure
    assert creates(machine.tick(attempt_seen(1, RunState.ABSENT), at=131.0)) != []


def test_a_second_retry_backs_off_in_full_even_when_its_attempt_never_got_scheduled() -> None:
    machine = Machine(maxRetries=2)
    machine.start_running()
    machine.tick(attempt_seen(1, RunState.FAILED, error=PREEMPTED, live_pods=1), at=100)
    assert creates(machine.tick(attempt_seen(1, RunState.ABSENT), at=130)) != []
    # Attempt 2's Job fails before any pod is placed: the Scheduled condition was False all along.
    step = machine.tick(attempt_seen(2, RunState.FAILED, error=PREEMPTED), at=300)
    assert requeue(step) == 60
    assert creates(machine.tick(attempt_seen(2, RunState.ABSENT), at=301)) == []
    assert creates(machine.tick(attempt_seen(2, RunState.ABSENT), at=360)) != []
