"""Retries, terminal states, suspend, deadlines, TTL and heartbeats: one test per rule (pure level)."""

from __future__ import annotations

from datetime import timedelta

from kubetune_operator.api.conditions import Reason
from kubetune_operator.api.status import ConditionStatus, ConditionType, Phase
from kubetune_operator.lifecycle.actions import CreateAttempt, DeleteAttempt, DeleteFineTuneJob, DeletePreflight
from kubetune_operator.lifecycle.transitions import retry_backoff_seconds
from kubetune_operator.observe.observation import Observation, RunObservation, RunState
from kubetune_operator.settings import OperatorSettings
from kubetune_trainer.contract import ErrorClass, JobError, Outcome, Progress, Result, Stage, WarningNote

from .core_builders import T0
from .machine_harness import Machine, attempt_seen, creates, reasons, requeue, succeeded_result

PREEMPTED = JobError(error_class=ErrorClass.INTERNAL, reason="Preempted", message="node drained", retryable=True)

PLANNED_GPUS = 1
"""GPUs the default job holds: LoRA on llama-2-7b-chat fits one of the template's eight (the GPU planner)."""


def _preempted(attempt: int, *, step: int | None = None) -> Observation:
    result = Result(outcome=Outcome.FAILED, exit_code=143, error=PREEMPTED, checkpoint_step=step)
    return attempt_seen(attempt, RunState.FAILED, error=PREEMPTED, result=result, live_pods=1)


def test_a_retryable_failure_starts_the_next_attempt_after_a_doubling_backoff_from_the_newest_checkpoint() -> None:
    machine = Machine(maxRetries=2)
    machine.start_running()
    step = machine.tick(_preempted(1, step=200), at=100)
    assert step.status.phase == Phase.QUEUED
    assert DeleteAttempt(attempt=1) in step.actions
    assert requeue(step) == 30
    assert step.status.checkpoints[-1].step == 200
    assert creates(machine.tick(attempt_seen(1, RunState.ABSENT), at=129)) == []
    step = machine.tick(Observation(), at=130)
    assert creates(step) == [CreateAttempt(attempt=2, resume_from="support-bot:200")]
    assert step.status.attempt == 2
    assert step.status.error is None

    machine.tick(attempt_seen(2, RunState.RUNNING), at=140)
    step = machine.tick(_preempted(2, step=300), at=200)
    assert requeue(step) == 60  # doubled
    step = machine.tick(Observation(), at=260)
    assert creates(step) == [CreateAttempt(attempt=3, resume_from="support-bot:300")]
    assert reasons(machine.events).count("Retrying") == 2


def test_retries_stop_at_max_retries_and_the_job_fails() -> None:
    machine = Machine(maxRetries=1)
    machine.start_running()
    machine.tick(_preempted(1), at=10)
    machine.tick(Observation(), at=40)
    machine.tick(attempt_seen(2, RunState.RUNNING), at=50)
    step = machine.tick(_preempted(2), at=60)
    assert step.status.phase == Phase.FAILED
    assert step.status.error == PREEMPTED.model_copy(update={"stage": None})
    assert reasons(step.events)[-2:] == ["RetriesExhausted", "Preempted"]
    assert DeleteAttempt(attempt=2) in step.actions


def test_without_a_checkpoint_location_a_retry_starts_over() -> None:
    machine = Machine(checkpoint=None)
    machine.start_running()
    machine.tick(_preempted(1, step=200), at=10)
    assert creates(machine.tick(Observation(), at=40)) == [CreateAttempt(attempt=2, resume_from=None)]
    assert "NoCheckpointLocation" in {w.reason for w in machine.status.warnings}


def test_max_retries_zero_fails_at_the_first_failure() -> None:
    machine = Machine(maxRetries=0)
    machine.start_running()
    assert machine.tick(_preempted(1), at=10).status.phase == Phase.FAILED


def test_the_backoff_is_capped() -> None:
    settings = OperatorSettings(retry_backoff_seconds=30, retry_backoff_cap_seconds=100)
    assert [retry_backoff_seconds(n, settings) for n in (1, 2, 3, 4, 10)] == [30, 60, 100, 100, 100]


def test_a_terminal_phase_is_sticky_children_are_never_recreated() -> None:
    machine = Machine()
    machine.start_running()
    machine.tick(attempt_seen(1, RunState.SUCCEEDED, result=succeeded_result()), at=10)
    assert machine.status.phase == Phase.SUCCEEDED
    for seen in (Observation(), attempt_seen(1, RunState.ABSENT), attempt_seen(1, RunState.FAILED, error=PREEMPTED)):
        step = machine.tick(seen, at=20)
        assert step.status.phase == Phase.SUCCEEDED
        assert creates(step) == []
        assert step.events == []


def test_after_a_terminal_failure_surviving_pods_are_deleted() -> None:
    fatal = JobError(error_class=ErrorClass.VALUE_ERROR, reason="ShapeMismatch", message="bad shapes")
    machine = Machine(model="meta-llama/Meta-Llama-3.1-70B-Instruct-Reference")
    machine.start_running()
    step = machine.tick(attempt_seen(1, RunState.FAILED, error=fatal, live_pods=3), at=10)
    assert step.status.phase == Phase.FAILED
    assert DeleteAttempt(attempt=1) in step.actions
    # Pods still terminating on a later look: delete again, nothing else.
    later = machine.tick(attempt_seen(1, RunState.FAILED, error=fatal, live_pods=2), at=20)
    assert later.actions == [DeleteAttempt(attempt=1)]
    assert later.events == []


def test_suspend_deletes_the_job_and_resume_starts_a_new_attempt_from_the_newest_checkpoint() -> None:
    machine = Machine()
    machine.start_running()
    machine.trainer_reports(Stage.TRAINING, done=(Stage.DATA_DOWNLOAD, Stage.INITIALIZATION))
    machine.edit_spec(suspend=True)
    step = machine.tick(attempt_seen(1, RunState.RUNNING, pod_seconds=600, live_pods=1), at=600)
    assert step.status.phase == Phase.SUSPENDED
    assert DeleteAttempt(attempt=1) in step.actions
    assert step.status.gpu_seconds == 600 * PLANNED_GPUS
    assert machine.condition(ConditionType.SUSPENDED).status == ConditionStatus.TRUE
    assert reasons(step.events)[-1] == "Suspended"
    quiet = machine.tick(Observation(), at=700)
    assert quiet.events == []
    assert quiet.actions == []

    machine.edit_spec(suspend=False)
    step = machine.tick(Observation(), at=800)
    # The suspended attempt reported no step: the trainer takes the newest under spec.checkpoint.uri.
    assert creates(step) == [CreateAttempt(attempt=2, resume_from="support-bot")]
    assert step.status.phase == Phase.QUEUED
    assert machine.condition(ConditionType.SUSPENDED).reason == "Resumed"


def test_suspended_before_it_started_creates_nothing() -> None:
    machine = Machine(suspend=True)
    step = machine.tick()
    assert step.status.phase == Phase.SUSPENDED
    assert step.actions == []


def test_suspend_during_the_preflight_removes_it_and_resume_validates_again() -> None:
    machine = Machine()
    machine.tick()
    machine.edit_spec(suspend=True)
    step = machine.tick(Observation(preflight=RunObservation(state=RunState.RUNNING, live_pods=1)))
    assert DeletePreflight() in step.actions
    machine.edit_spec(suspend=False)
    step = machine.tick()
    assert step.status.phase == Phase.VALIDATING


def test_active_deadline_fails_the_job_as_deadline_exceeded() -> None:
    machine = Machine(activeDeadlineSeconds=3600)
    machine.start_running()
    step = machine.tick(attempt_seen(1, RunState.RUNNING), at=1000)
    assert requeue(step) == 2600
    step = machine.tick(attempt_seen(1, RunState.RUNNING, live_pods=1, pod_seconds=3600), at=3600)
    assert step.status.phase == Phase.FAILED
    assert step.status.error is not None
    assert step.status.error.reason == Reason.DEADLINE_EXCEEDED
    assert DeleteAttempt(attempt=1) in step.actions


def test_ttl_after_finished_deletes_the_finetunejob() -> None:
    machine = Machine(ttlSecondsAfterFinished=300)
    machine.start_running()
    step = machine.tick(attempt_seen(1, RunState.SUCCEEDED, result=succeeded_result()), at=100)
    assert requeue(step) == 300
    step = machine.tick(attempt_seen(1, RunState.SUCCEEDED), at=250)
    assert requeue(step) == 150
    step = machine.tick(attempt_seen(1, RunState.SUCCEEDED), at=400)
    assert DeleteFineTuneJob() in step.actions
    assert reasons(step.events) == ["TTLExpired"]


def test_a_stale_heartbeat_while_training_is_stalled_and_retried() -> None:
    settings = OperatorSettings(heartbeat_stale_seconds=600)
    machine = Machine(settings=settings)
    machine.start_running()
    beat = T0 + timedelta(seconds=100)
    machine.trainer_reports(
        Stage.TRAINING, done=(Stage.DATA_DOWNLOAD, Stage.INITIALIZATION), progress=Progress(step=7, heartbeat_time=beat)
    )
    step = machine.tick(attempt_seen(1, RunState.RUNNING), at=200)
    assert requeue(step) == 500
    step = machine.tick(attempt_seen(1, RunState.RUNNING, live_pods=1), at=700)
    assert step.status.phase == Phase.QUEUED
    assert step.status.error is not None
    assert (step.status.error.reason, step.status.error.retryable) == ("Stalled", True)
    assert DeleteAttempt(attempt=1) in step.actions


def test_a_missing_template_waits_and_retries_then_proceeds_when_it_appears() -> None:
    machine = Machine(model="acme/not-yet")
    step = machine.tick()
    assert step.status.phase == Phase.PENDING
    assert machine.condition(ConditionType.VALIDATED).reason == "TemplateNotFound"
    assert requeue(step) == 30
    assert reasons(step.events) == ["TemplateNotFound"]
    assert step.status.error is not None  # the ERROR and REASON printer columns show it at once
    assert (step.status.error.error_class, step.status.error.reason) == ("InvalidInput", "TemplateNotFound")
    assert step.status.error.retryable
    assert machine.tick(at=30).events == []
    machine.raw_spec["model"] = "llama-2-7b-chat"
    proceeding = machine.tick(at=60)
    assert proceeding.status.phase == Phase.VALIDATING
    assert proceeding.status.error is None


def test_an_invalid_spec_fails_as_invalid_input_with_no_children() -> None:
    machine = Machine(trainingFile="ftp://nope")
    step = machine.tick()
    assert step.status.phase == Phase.FAILED
    assert step.status.error is not None
    assert step.status.error.error_class == ErrorClass.INVALID_INPUT
    assert "spec.trainingFile" in step.status.error.message
    assert step.actions == []


def test_a_template_limit_fails_as_invalid_input_with_no_children() -> None:
    machine = Machine(lora={"r": 512})
    step = machine.tick()
    assert step.status.phase == Phase.FAILED
    assert step.status.error is not None
    assert (step.status.error.error_class, step.status.error.reason) == (
        ErrorClass.INVALID_INPUT,
        "TemplateLimitExceeded",
    )
    assert "spec.lora.r" in step.status.error.message
    assert step.actions == []


def test_a_failed_preflight_ends_the_job_as_invalid_input_with_no_gpu_pod() -> None:
    refused = JobError(
        error_class=ErrorClass.INVALID_INPUT,
        reason="RemoteCodeRefused",
        message="declares auto_map",
        hint="pick another",
    )
    machine = Machine()
    machine.tick()
    step = machine.tick(Observation(preflight=RunObservation(state=RunState.FAILED, error=refused)))
    assert step.status.phase == Phase.FAILED
    assert step.status.error == refused
    assert machine.condition(ConditionType.VALIDATED).reason == "PreflightFailed"
    assert [a for a in machine.actions if isinstance(a, CreateAttempt)] == []


def test_gpu_seconds_add_up_over_attempts_and_warnings_of_a_failed_attempt_are_kept() -> None:
    machine = Machine(maxRetries=1)
    machine.start_running()
    noted = WarningNote(reason="SlowStorage", message="checkpoint upload took 300s")
    result = Result(outcome=Outcome.FAILED, exit_code=143, error=PREEMPTED, warnings=[noted])
    machine.tick(attempt_seen(1, RunState.FAILED, error=PREEMPTED, result=result, pod_seconds=100), at=100)
    assert machine.status.gpu_seconds == 100 * PLANNED_GPUS
    assert noted in machine.status.warnings
    machine.tick(Observation(), at=130)
    machine.tick(attempt_seen(2, RunState.RUNNING), at=140)
    done = attempt_seen(2, RunState.SUCCEEDED, result=succeeded_result(), pod_seconds=50)
    assert machine.tick(done, at=200).status.gpu_seconds == 150 * PLANNED_GPUS


def test_a_suspend_and_resume_uses_no_retry() -> None:
    machine = Machine(maxRetries=1)
    machine.start_running()
    machine.edit_spec(suspend=True)
    machine.tick(attempt_seen(1, RunState.RUNNING, live_pods=1), at=100)
    machine.edit_spec(suspend=False)
    assert creates(machine.tick(Observation(), at=200)) == [CreateAttempt(attempt=2, resume_from="support-bot")]
    machine.tick(attempt_seen(2, RunState.RUNNING), at=210)
    step = machine.tick(_preempted(2), at=300)
    # Attempt 2 came from a resume, not a retry: its failure is retry 1 of 1, after the first backoff.
    assert step.status.phase == Phase.QUEUED
    assert step.status.retries == 1
    assert requeue(step) == 30
    assert creates(machine.tick(Observation(), at=330)) == [CreateAttempt(attempt=3, resume_from="support-bot")]


def test_the_active_deadline_starts_again_on_resume_as_a_batch_jobs_does() -> None:
    machine = Machine(activeDeadlineSeconds=3600)
    machine.start_running()
    machine.edit_spec(suspend=True)
    machine.tick(attempt_seen(1, RunState.RUNNING, live_pods=1), at=1000)
    machine.edit_spec(suspend=False)
    step = machine.tick(Observation(), at=10_000)
    assert creates(step) == [CreateAttempt(attempt=2, resume_from="support-bot")]
    step = machine.tick(attempt_seen(2, RunState.RUNNING), at=10_100)
    assert step.status.phase == Phase.RUNNING
    assert requeue(step) == 3500
    step = machine.tick(attempt_seen(2, RunState.RUNNING, live_pods=1), at=13_600)
    assert step.status.error is not None
    assert step.status.error.reason == Reason.DEADLINE_EXCEEDED


def test_gpu_time_of_a_failed_attempt_is_counted_once_when_the_job_is_suspended_or_times_out_in_its_backoff() -> None:
    for edit in ({"suspend": True}, {"activeDeadlineSeconds": 700}):
        machine = Machine()
        machine.start_running()
        failed = _preempted(1).trainer.model_copy(update={"pod_seconds": 600.0})
        step = machine.tick(Observation(attempt=1, trainer=failed), at=600)
        assert step.status.gpu_seconds == 600 * PLANNED_GPUS
        machine.edit_spec(**edit)
        # The failed attempt's Job is still listed while it is being deleted.
        step = machine.tick(Observation(attempt=1, trainer=failed), at=710)
        assert step.status.phase in (Phase.SUSPENDED, Phase.FAILED)
        assert step.status.gpu_seconds == 600 * PLANNED_GPUS, edit


def test_a_training_heartbeat_from_before_kueue_took_the_admission_back_does_not_stall_the_readmitted_pods() -> None:
    settings = OperatorSettings(heartbeat_stale_seconds=600)
    machine = Machine(settings=settings, queueName="gpu-queue")
    machine.start_running()
    beat = T0 + timedelta(seconds=100)
    machine.trainer_reports(
        Stage.TRAINING, done=(Stage.DATA_DOWNLOAD, Stage.INITIALIZATION), progress=Progress(step=7, heartbeat_time=beat)
    )
    machine.tick(attempt_seen(1, RunState.RUNNING), at=200)
    step = machine.tick(attempt_seen(1, RunState.AWAITING_ADMISSION, message="Kueue suspended the Job"), at=300)
    assert step.status.phase == Phase.QUEUED
    # Readmitted an hour later: new pods start their stages over, nothing is stale yet.
    step = machine.tick(attempt_seen(1, RunState.RUNNING), at=3900)
    assert step.status.phase == Phase.RUNNING
    assert step.status.error is None
    assert step.status.progress is None


def test_a_late_heartbeat_of_pods_kueue_stopped_does_not_stall_the_readmitted_pods() -> None:
    settings = OperatorSettings(heartbeat_stale_seconds=600)
    machine = Machine(settings=settings, queueName="gpu-queue")
    machine.start_running()
    machine.tick(attempt_seen(1, RunState.AWAITING_ADMISSION, message="Kueue suspended the Job"), at=300)
    # The stopping pods' last report lands after the operator saw the suspension.
    beat = T0 + timedelta(seconds=310)
    machine.trainer_reports(Stage.TRAINING, progress=Progress(step=9, heartbeat_time=beat))
    step = machine.tick(attempt_seen(1, RunState.RUNNING), at=3900)
    assert step.status.phase == Phase.RUNNING
    assert requeue(step) == 600
    step = machine.tick(attempt_seen(1, RunState.RUNNING, live_pods=1), at=4500)
    assert step.status.error is not None
    assert step.status.error.reason == "Stalled"


def test_a_resume_after_a_suspend_takes_the_newest_checkpoint_not_one_an_earlier_attempt_reported() -> None:
    machine = Machine()
    machine.start_running()
    machine.tick(_preempted(1, step=200), at=100)
    assert creates(machine.tick(Observation(), at=130)) == [CreateAttempt(attempt=2, resume_from="support-bot:200")]
    machine.tick(attempt_seen(2, RunState.RUNNING), at=140)
    # Attempt 2 trains far past step 200, then is suspended: it reports no step of its own.
    machine.edit_spec(suspend=True)
    machine.tick(attempt_seen(2, RunState.RUNNING, live_pods=1), at=5000)
    machine.edit_spec(suspend=False)
    assert creates(machine.tick(Observation(), at=5100)) == [CreateAttempt(attempt=3, resume_from="support-bot")]


def test_cancel_removes_the_pods_and_ends_cancelled_keeping_the_checkpoints() -> None:
    machine = Machine()
    machine.start_running()
    machine.trainer_reports(Stage.TRAINING, done=(Stage.DATA_DOWNLOAD, Stage.INITIALIZATION))
    machine.edit_spec(cancel=True)
    step = machine.tick(attempt_seen(1, RunState.RUNNING, pod_seconds=600, live_pods=1), at=600)
    assert step.status.phase == Phase.CANCELLED
    assert DeleteAttempt(attempt=1) in step.actions
    assert step.status.gpu_seconds == 600 * PLANNED_GPUS
    assert step.status.completion_time is not None
    assert machine.condition(ConditionType.CANCELLED).status == ConditionStatus.TRUE
    assert reasons(step.events)[-1] == "Cancelled"
    # The pods checkpoint on SIGTERM and end Preempted: the step is recorded, nothing is retried.
    step = machine.tick(_preempted(1, step=120), at=620)
    assert step.status.phase == Phase.CANCELLED
    assert [c.step for c in step.status.checkpoints] == [120]
    assert creates(step) == []
    assert step.events == []
    # Terminal and sticky: unsetting suspend or anything else starts nothing.
    quiet = machine.tick(Observation(), at=700)
    assert quiet.status.phase == Phase.CANCELLED
    assert quiet.actions == []


def test_cancel_before_it_started_creates_nothing() -> None:
    machine = Machine(cancel=True)
    step = machine.tick()
    assert step.status.phase == Phase.CANCELLED
    assert step.actions == []


def test_the_next_attempt_waits_until_no_pod_of_the_previous_one_remains() -> None:
    machine = Machine(maxRetries=2)
    machine.start_running()
    machine.tick(_preempted(1, step=200), at=100)
    # The backoff is over, the Job is gone, but one pod is still Terminating (its checkpoint in flight).
    terminating = Observation(attempt=1, attempt_pods_present=1)
    step = machine.tick(terminating, at=130)
    assert creates(step) == []
    assert DeleteAttempt(attempt=1) in step.actions
    assert reasons(step.events) == ["PreviousAttemptStopping"]
    assert machine.status.attempt == 1
    assert machine.condition(ConditionType.SCHEDULED).reason == Reason.RETRY_BACKOFF
    assert reasons(machine.tick(terminating, at=131).events) == [], "announced once"
    step = machine.tick(Observation(attempt=1), at=140)
    assert creates(step) == [CreateAttempt(attempt=2, resume_from="support-bot:200")]
