"""spec.gpus edited on a running job resizes its next attempt, recorded, or is refused with a Warning (pure level).

The default job (LoRA on llama-2-7b-chat, one node of up to 8 GPUs) is admitted on 2 GPUs. An edit
to spec.gpus changes nothing while attempt 1 runs; the retry after a preemption is rendered from
the resized record, whose hash changes, with a Resized Event. A count the record cannot take is a
ResizeRefused Warning, and the retry runs at the recorded size.
"""

from __future__ import annotations

from kubetune_operator.lifecycle.actions import CreateAttempt
from kubetune_operator.observe.observation import Observation, RunState
from kubetune_trainer.contract import ErrorClass, JobError, Outcome, Result

from .machine_harness import Machine, attempt_seen, creates, reasons

PREEMPTED = JobError(error_class=ErrorClass.INTERNAL, reason="Preempted", message="node drained", retryable=True)


def _preempted_at_step(step: int) -> Observation:
    result = Result(outcome=Outcome.FAILED, exit_code=143, error=PREEMPTED, checkpoint_step=step)
    return attempt_seen(1, RunState.FAILED, error=PREEMPTED, result=result, live_pods=1)


def _admitted_on_two_gpus() -> tuple[Machine, str]:
    machine = Machine(maxRetries=2, gpus=2)
    machine.start_running()
    resolved = machine.status.resolved
    assert resolved is not None
    assert resolved.record is not None
    assert resolved.hash is not None
    assert (resolved.nodes, resolved.gpus_per_node) == (1, 2)
    return machine, resolved.hash


def test_the_retry_after_a_preemption_runs_on_the_gpus_the_spec_now_asks_for() -> None:
    machine, admitted_hash = _admitted_on_two_gpus()
    machine.edit_spec(gpus=1)
    machine.tick(attempt_seen(1, RunState.RUNNING), at=50)
    resolved = machine.status.resolved
    assert resolved is not None
    assert resolved.gpus_per_node == 2  # attempt 1 still runs what it was created from
    machine.tick(_preempted_at_step(200), at=100)
    machine.tick(attempt_seen(1, RunState.ABSENT), at=110)

    step = machine.tick(Observation(), at=130)

    assert creates(step) == [CreateAttempt(attempt=2, resume_from="support-bot:200")]
    resolved = step.status.resolved
    assert resolved is not None
    assert resolved.record is not None
    assert (resolved.nodes, resolved.gpus_per_node) == (1, 1)
    assert resolved.record.resources.gpus_per_node == 1  # what attempt 2's pods are rendered from
    assert resolved.gpu_plan is not None
    assert (resolved.gpu_plan.gpus, resolved.gpu_plan.requested) == (1, True)
    assert resolved.hash == resolved.record.digest() != admitted_hash
    (resize,) = [event for event in step.events if event.reason == "Resized"]
    assert resize.message.startswith("attempt 2 holds 1 GPU(s) on 1 node(s), as spec.gpus asks (attempt 1 held 2 on 1)")
    assert reasons(step.events).index("Resized") < reasons(step.events).index("AttemptCreated")


def test_a_count_the_record_cannot_take_is_refused_and_the_retry_keeps_its_size() -> None:
    machine, admitted_hash = _admitted_on_two_gpus()
    machine.edit_spec(gpus=4)  # more than the 2 per node the job's one node was planned with
    machine.tick(_preempted_at_step(200), at=100)
    machine.tick(attempt_seen(1, RunState.ABSENT), at=110)

    step = machine.tick(Observation(), at=130)

    assert creates(step) == [CreateAttempt(attempt=2, resume_from="support-bot:200")]
    resolved = step.status.resolved
    assert resolved is not None
    assert (resolved.gpus_per_node, resolved.hash) == (2, admitted_hash)
    (refused,) = [event for event in step.events if event.reason == "ResizeRefused"]
    assert refused.type == "Warning"
    assert "spec.gpus 4 cannot resize this job" in refused.message
