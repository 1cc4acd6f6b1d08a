"""One operator error table: a reason means the same class, retryability and hint wherever it is found,
and the reasons the trainer's table also knows read the same on both sides."""

from __future__ import annotations

from kubetune_operator.api.conditions import Reason
from kubetune_operator.api.error_table import RULES, operator_error
from kubetune_operator.observe.observation import RunState, observe_run
from kubetune_trainer.classify import classify
from kubetune_trainer.contract import HOST_OUT_OF_MEMORY, ErrorClass
from kubetune_trainer.preemption import preempted

from .core_builders import T0, pod, terminated
from .machine_harness import Machine, attempt_seen


def test_crashed_is_retryable_whether_a_pod_or_the_state_machine_found_it() -> None:
    from_pod = observe_run(
        None, [pod(phase="Failed", container_state=terminated(exit_code=1))], now=T0, image_pull_grace=60
    )
    assert from_pod.error is not None
    machine = Machine(maxRetries=1)
    machine.start_running()
    machine.tick(attempt_seen(1, RunState.FAILED), at=10)  # failed, and nothing says why
    from_machine = machine.status.error
    assert from_machine is not None
    assert (
        (from_pod.error.reason, from_pod.error.error_class, from_pod.error.retryable)
        == (
            from_machine.reason,
            from_machine.error_class,
            from_machine.retryable,
        )
        == ("Crashed", ErrorClass.INTERNAL, True)
    )
    assert machine.status.retries == 1, "a Crashed attempt is retried"


def test_every_row_renders_a_hint_with_no_placeholder_left() -> None:
    for reason in RULES:
        error = operator_error(reason, "it happened", uid="0b7c", image="trainer:1")
        assert error.hint, reason
        assert "{" not in error.hint, reason


def test_the_shared_reasons_agree_with_the_trainers_table() -> None:
    host = classify(MemoryError(), stage=None, job_uid="u")
    assert (
        RULES[HOST_OUT_OF_MEMORY].error_class,
        RULES[HOST_OUT_OF_MEMORY].retryable,
        RULES[HOST_OUT_OF_MEMORY].hint,
    ) == (
        host.error_class,
        host.retryable,
        host.hint,
    )
    taken = classify(preempted("SIGTERM"), stage=None, job_uid="u")
    assert (taken.reason, taken.error_class, taken.retryable) == (
        Reason.PREEMPTED,
        RULES[Reason.PREEMPTED].error_class,
        RULES[Reason.PREEMPTED].retryable,
    )
