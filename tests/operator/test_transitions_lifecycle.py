"""The happy path at the pure level: status, conditions and Events through every stage to Succeeded."""

from __future__ import annotations

from datetime import timedelta

from kubetune_operator.api.status import ConditionStatus, ConditionType, Phase
from kubetune_operator.lifecycle.actions import CreateAttempt, CreatePreflight
from kubetune_operator.observe.observation import Observation, RunObservation, RunState
from kubetune_operator.settings import OperatorSettings
from kubetune_trainer.contract import Outcome, Progress, Result, Stage, StageRecord, StageState, WarningNote

from .core_builders import CATALOG, T0, template
from .machine_harness import FACTS, PASSED, Machine, attempt_seen, creates, reasons, succeeded_result


def test_a_new_job_resolves_and_starts_the_preflight_before_any_gpu() -> None:
    machine = Machine()
    step = machine.tick()
    assert step.status.phase == Phase.VALIDATING
    assert step.actions == [CreatePreflight()]
    assert step.status.observed_generation == 1
    resolved = step.status.resolved
    assert resolved is not None
    # LoRA on a 7B model: the GPU planner holds one of the template's eight.
    assert (resolved.template, resolved.nodes, resolved.gpus_per_node) == ("llama-2-7b-chat", 1, 1)
    assert resolved.gpu_plan is not None
    assert resolved.gpu_plan.max_gpus == 8
    assert resolved.hyperparameters is not None
    assert resolved.hyperparameters.batch_size == 64
    validated = machine.condition(ConditionType.VALIDATED)
    assert (validated.status, validated.reason) == (ConditionStatus.UNKNOWN, "PreflightRunning")
    assert reasons(step.events) == ["PreflightRunning"]


def test_a_passed_preflight_records_the_model_facts_and_creates_attempt_one() -> None:
    machine = Machine()
    machine.tick()
    warning = WarningNote(reason="TemplateSizeMismatch", message="sized for 7B")
    preflight = RunObservation(
        state=RunState.SUCCEEDED, result=Result(outcome=Outcome.SUCCEEDED, model=FACTS, warnings=[warning])
    )
    step = machine.tick(Observation(preflight=preflight), at=20)
    assert step.status.phase == Phase.QUEUED
    assert creates(step) == [CreateAttempt(attempt=1, resume_from=None)]
    assert step.status.attempt == 1
    assert step.status.start_time == T0 + timedelta(seconds=20)
    resolved = step.status.resolved
    assert resolved is not None
    assert resolved.revision_sha == FACTS.revision_sha
    assert (resolved.architecture, resolved.parameters, resolved.max_positions) == (
        "LlamaForCausalLM",
        FACTS.parameters,
        4096,
    )
    assert warning in step.status.warnings
    assert reasons(step.events) == ["PreflightPassed", "TemplateSizeMismatch", "AttemptCreated"]
    assert machine.condition(ConditionType.VALIDATED).status == ConditionStatus.TRUE


def test_a_template_may_turn_the_preflight_off() -> None:
    machine = Machine(settings=OperatorSettings(preflight=False))
    step = machine.tick()
    assert creates(step) == [CreateAttempt(attempt=1)]
    assert not any(isinstance(a, CreatePreflight) for a in step.actions)
    assert machine.condition(ConditionType.VALIDATED).reason == "PreflightSkipped"


def test_every_stage_transition_is_one_event_and_a_progress_tick_is_none() -> None:
    machine = Machine()
    machine.tick()
    machine.tick(Observation(preflight=PASSED))
    step = machine.tick(attempt_seen(1, RunState.RUNNING), at=60)
    assert step.status.phase == Phase.RUNNING
    assert reasons(step.events) == ["PodsRunning"]

    machine.trainer_reports(Stage.DATA_DOWNLOAD)
    step = machine.tick(attempt_seen(1, RunState.RUNNING), at=70)
    assert [e.message for e in step.events] == ["stage DataDownload started"]
    assert machine.condition(ConditionType.RUNNING).reason == "DataDownload"

    done = (Stage.DATA_DOWNLOAD, Stage.INITIALIZATION)
    machine.trainer_reports(Stage.TRAINING, done=done, progress=Progress(step=1, heartbeat_time=T0))
    step = machine.tick(attempt_seen(1, RunState.RUNNING), at=80)
    # One Event per transition: a start names what finished before it.
    assert [e.message for e in step.events] == [
        "stage Initialization started; DataDownload finished: DataDownload done",
        "stage Training started; Initialization finished: Initialization done",
    ]

    before = machine.status
    machine.trainer_reports(Stage.TRAINING, done=done, progress=Progress(step=50, loss=1.2, heartbeat_time=T0))
    step = machine.tick(attempt_seen(1, RunState.RUNNING), at=90)
    assert step.events == []
    assert step.status.conditions == before.conditions  # nothing to patch but the trainer's own progress
    assert step.status.phase == before.phase


def test_a_finished_stage_with_its_times_says_how_long_it_took() -> None:
    machine = Machine()
    machine.start_running()
    began = T0 + timedelta(seconds=5)
    records = [
        StageRecord(name=Stage.DATA_DOWNLOAD, state=StageState.SUCCEEDED, start_time=T0, end_time=began),
        StageRecord(name=Stage.INITIALIZATION, state=StageState.RUNNING, start_time=began),
    ]
    machine.status = machine.status.model_copy(update={"stage": Stage.INITIALIZATION, "stages": records})
    step = machine.tick(attempt_seen(1, RunState.RUNNING), at=10)
    assert [e.message for e in step.events] == [
        "stage DataDownload started",
        "stage Initialization started; DataDownload finished in 5s",
    ]


def test_success_finishes_the_remaining_stages_and_records_output_and_gpu_time() -> None:
    machine = Machine()
    machine.start_running()
    machine.trainer_reports(Stage.TRAINING, done=(Stage.DATA_DOWNLOAD, Stage.INITIALIZATION))
    machine.tick(attempt_seen(1, RunState.RUNNING), at=10)
    machine.trainer_reports(
        Stage.UPLOAD, done=(Stage.DATA_DOWNLOAD, Stage.INITIALIZATION, Stage.TRAINING, Stage.SAVING)
    )
    done = attempt_seen(1, RunState.SUCCEEDED, result=succeeded_result(), pod_seconds=3600)
    step = machine.tick(done, at=3600)
    status = step.status
    assert status.phase == Phase.SUCCEEDED
    assert status.completion_time == T0 + timedelta(seconds=3600)
    assert status.output_model is not None
    assert status.output_model.uri == "s3://models/support-bot"
    assert status.gpu_seconds == 3600 * 1  # one planned GPU for an hour
    assert [(e.reason, e.message) for e in step.events] == [
        ("StageStarted", "stage Saving started; Training finished: Training done"),
        ("StageStarted", "stage Upload started; Saving finished: Saving done"),
        (
            "Completed",
            "the job succeeded: Llama-2-7b-chat-hf-support-bot at s3://models/support-bot (stage Upload finished)",
        ),
    ]
    assert machine.condition(ConditionType.SUCCEEDED).status == ConditionStatus.TRUE
    assert machine.condition(ConditionType.RUNNING).status == ConditionStatus.FALSE


def test_replaying_the_same_observation_changes_nothing_and_posts_nothing() -> None:
    machine = Machine()
    machine.start_running()
    first = machine.tick(attempt_seen(1, RunState.RUNNING), at=30)
    second = machine.tick(attempt_seen(1, RunState.RUNNING), at=31)
    assert second.status == first.status
    assert second.events == []
    assert creates(second) == []


def test_last_transition_time_moves_only_when_a_condition_status_changes() -> None:
    machine = Machine()
    machine.tick(at=0)
    machine.tick(Observation(preflight=PASSED), at=10)
    machine.tick(attempt_seen(1, RunState.UNSCHEDULABLE, message="0/3 nodes"), at=20)
    scheduled_at = machine.condition(ConditionType.SCHEDULED).last_transition_time
    machine.tick(attempt_seen(1, RunState.UNSCHEDULABLE, message="0/4 nodes"), at=30)
    assert machine.condition(ConditionType.SCHEDULED).last_transition_time == scheduled_at
    assert machine.condition(ConditionType.SCHEDULED).message == "0/4 nodes"
    machine.tick(attempt_seen(1, RunState.RUNNING), at=40)
    assert machine.condition(ConditionType.SCHEDULED).last_transition_time == T0 + timedelta(seconds=40)


def test_observed_generation_follows_the_spec_generation() -> None:
    machine = Machine()
    machine.start_running()
    machine.edit_spec(ttlSecondsAfterFinished=60)
    step = machine.tick(attempt_seen(1, RunState.RUNNING), at=5)
    assert step.status.observed_generation == 2
    assert all(c.observed_generation == 2 for c in step.status.conditions if c.type == ConditionType.RUNNING)


def test_auto_runs_the_preflight_first_then_keeps_the_template_the_facts_chose() -> None:
    machine = Machine(model="auto", fromHfModel="HuggingFaceTB/SmolLM2-135M-Instruct")
    step = machine.tick()
    assert step.actions == [CreatePreflight()]
    assert step.status.resolved is None
    small = FACTS.model_copy(update={"parameters": 1_235_814_400, "max_positions": 131072})
    preflight = RunObservation(state=RunState.SUCCEEDED, result=Result(outcome=Outcome.SUCCEEDED, model=small))
    step = machine.tick(Observation(preflight=preflight))
    assert step.status.resolved is not None
    assert step.status.resolved.template == "llama-3.2-1b-instruct"
    assert creates(step) == [CreateAttempt(attempt=1)]
    # Later reconciles no longer see the preflight's facts, and keep the choice.
    step = machine.tick(Observation(attempt=1, trainer=RunObservation(state=RunState.RUNNING)))
    assert step.status.phase == Phase.RUNNING
    assert step.status.resolved is not None
    assert step.status.resolved.template == "llama-3.2-1b-instruct"
    assert template("llama-3.2-1b-instruct") in CATALOG


def test_a_job_queued_by_kueue_waits_for_admission() -> None:
    machine = Machine(queueName="gpu-queue")
    machine.tick()
    machine.tick(Observation(preflight=PASSED))
    step = machine.tick(attempt_seen(1, RunState.AWAITING_ADMISSION, message="waiting for Kueue to admit the Job"))
    assert step.status.phase == Phase.QUEUED
    assert machine.condition(ConditionType.SCHEDULED).reason == "AwaitingAdmission"
    assert reasons(step.events) == ["AwaitingAdmission"]


def test_a_step_replayed_from_a_status_that_was_never_stored_asks_for_the_same_objects() -> None:
    """The operator stopped after creating attempt 1 but before its status patch landed."""
    machine = Machine()
    machine.tick()
    before = machine.status
    first = machine.tick(Observation(preflight=PASSED), at=10)
    machine.status = before  # the patch was lost
    second = machine.tick(Observation(preflight=PASSED), at=20)
    assert creates(first) == creates(second) == [CreateAttempt(attempt=1)]
    # Once the status holds attempt 1, an absent Job is created again, never a second attempt.
    third = machine.tick(Observation(), at=30)
    assert creates(third) == [CreateAttempt(attempt=1)]
    assert third.events == []


def test_kueue_taking_the_admission_back_requeues_without_a_retry() -> None:
    machine = Machine(queueName="gpu-queue")
    machine.start_running()
    step = machine.tick(attempt_seen(1, RunState.AWAITING_ADMISSION, message="Kueue suspended the Job"), at=50)
    assert step.status.phase == Phase.QUEUED
    assert step.status.attempt == 1
    assert machine.condition(ConditionType.RUNNING).status == ConditionStatus.FALSE
    assert creates(step) == []
    assert machine.tick(attempt_seen(1, RunState.RUNNING), at=90).status.phase == Phase.RUNNING


def test_a_job_whose_pods_are_not_placed_yet_changes_nothing_until_they_are() -> None:
    machine = Machine()
    machine.tick()
    machine.tick(Observation(preflight=PASSED))
    queued = machine.status
    not_placed = Observation(preflight=PASSED, attempt=1, trainer=RunObservation(state=RunState.PENDING))
    step = machine.tick(not_placed, at=1)
    assert step.status == queued  # no status patch: nothing a user would see has changed
    assert step.events == []
    placed = not_placed.model_copy(update={"trainer": RunObservation(state=RunState.PENDING, scheduled=True)})
    machine.tick(placed, at=2)
    assert machine.condition(ConditionType.SCHEDULED).status == ConditionStatus.TRUE
