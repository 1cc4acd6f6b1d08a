"""The FineTuneJob state machine: (spec, status, resolution, observation, now) -> (status, events, actions).

Pure and total: every input combination gives a step, time is an argument, and the same
inputs give the same step, so a replayed event or a restarted operator repeats nothing.

Phases: Pending -> Validating (preflight) -> Queued -> Running -> Succeeded | Failed, and
Suspended from any non-terminal phase. Terminal phases are sticky: nothing is created for a
finished job, whatever happens to its children. The shell applies the actions and patches the
status once, only when it changed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from kubetune_trainer.contract import ErrorClass, JobError, Stage, WarningNote, WireModel

from .actions import (
    Action,
    CreateAttempt,
    CreatePreflight,
    DeleteAttempt,
    DeleteFineTuneJob,
    DeletePreflight,
    RequeueAfter,
)
from .api.conditions import EventNote, Reason, find_condition, with_condition
from .api.spec import AUTO_TEMPLATE, FineTuneJobSpec
from .api.status import (
    TERMINAL_PHASES,
    CheckpointRecord,
    ConditionStatus,
    ConditionType,
    FineTuneJobStatus,
    OutputModel,
    Phase,
)
from .observe import Observation, RunObservation, RunState
from .resolve import Resolution, Unresolved
from .settings import OperatorSettings
from .stage_events import announced_stage, stage_events

__all__ = ["Action", "JobFacts", "Step", "advance", "retry_backoff_seconds"]

TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN
_PROVISIONAL_WARNINGS = frozenset({"TemplateFamilyMismatch", "TemplateSizeMismatch", "SequenceLengthCapped"})
"""Preflight warnings about the template it ran under; with `model: auto` that was provisional."""


class JobFacts(WireModel):
    """The FineTuneJob's identity and metadata the state machine needs."""

    name: str = Field(description="Name of the FineTuneJob.")
    namespace: str = Field(description="Namespace of the FineTuneJob.")
    uid: str = Field(description="UID, quoted in hints for Internal errors.")
    generation: int = Field(1, ge=0, description="metadata.generation, reported as observedGeneration.")


class Step(WireModel):
    """One step of the machine: the status to patch, the Events to post, the actions to apply."""

    status: FineTuneJobStatus = Field(description="The new status (patch only if it differs).")
    events: list[EventNote] = Field(default_factory=list, description="Events, in order.")
    actions: list[Action] = Field(default_factory=list, description="Actions, in order.")


def retry_backoff_seconds(retry: int, settings: OperatorSettings) -> float:
    """Wait before retry number `retry` (1-based): base, doubling, capped."""
    doubled = settings.retry_backoff_seconds * float(2 ** max(retry - 1, 0))
    return min(doubled, settings.retry_backoff_cap_seconds)


def advance(
    *,
    job: JobFacts,
    spec: FineTuneJobSpec | None,
    status: FineTuneJobStatus,
    resolution: Resolution,
    observation: Observation,
    now: datetime,
    settings: OperatorSettings,
) -> Step:
    """The next step for a FineTuneJob. `spec` is None when it failed validation (see `resolution`)."""
    machine = _Machine(
        job=job,
        spec=spec,
        status=status,
        resolution=resolution,
        seen=observation,
        now=now,
        settings=settings,
    )
    machine.run()
    return machine.step()


class _Machine:
    def __init__(
        self,
        *,
        job: JobFacts,
        spec: FineTuneJobSpec | None,
        status: FineTuneJobStatus,
        resolution: Resolution,
        seen: Observation,
        now: datetime,
        settings: OperatorSettings,
    ) -> None:
        self.job, self.spec, self.resolution, self.seen = job, spec, resolution, seen
        self.now, self.settings = now, settings
        self.status = status.model_copy(update={"observed_generation": job.generation})
        self.events: list[EventNote] = []
        self.actions: list[Action] = []
        self.requeue: float | None = None

    # -- the shell's view ------------------------------------------------------------------

    def step(self) -> Step:
        actions = list(self.actions)
        if self.requeue is not None:
            actions.append(RequeueAfter(seconds=max(0.0, self.requeue)))
        return Step(status=self.status, events=self.events, actions=actions)

    def _update(self, **changes: object) -> None:
        self.status = self.status.model_copy(update=changes)

    def _condition(self, kind: ConditionType, state: ConditionStatus, reason: str, message: str = "") -> None:
        self._update(
            conditions=with_condition(
                self.status.conditions,
                kind,
                state,
                reason=reason,
                message=message,
                now=self.now,
                generation=self.job.generation,
            )
        )

    def _reason(self, kind: ConditionType) -> str | None:
        found = find_condition(self.status.conditions, kind)
        return found.reason if found is not None else None

    def _look_again(self, seconds: float) -> None:
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)

    # -- the machine -----------------------------------------------------------------------

    def run(self) -> None:
        phase = self.status.phase
        if phase in TERMINAL_PHASES:
            self._finished()
            return
        if self.spec is None or self.resolution.problem == Unresolved.INVALID_SPEC:
            self._fail(
                self._input_error(Reason.INVALID_SPEC, "fix the fields listed; `kubetune check job.yaml` shows them")
            )
            return
        if self.spec.suspend:
            self._suspend()
            return
        if phase == Phase.SUSPENDED:
            self._resume()
            return
        if self._deadline_passed():
            return
        if phase in (None, Phase.PENDING):
            self._validate()
        elif phase == Phase.VALIDATING:
            self._preflight()
        else:
            self._attempt()

    def _finished(self) -> None:
        """Sticky: only make sure no pod still holds a GPU, and honour ttlSecondsAfterFinished."""
        if self.seen.trainer.live_pods and self.seen.attempt:
            self.actions.append(DeleteAttempt(attempt=self.seen.attempt))
        if self.seen.preflight.live_pods:
            self.actions.append(DeletePreflight())
        ttl = self.spec.ttl_seconds_after_finished if self.spec is not None else None
        done_at = self.status.completion_time
        if ttl is None or done_at is None:
            return
        remaining = (done_at + timedelta(seconds=ttl) - self.now).total_seconds()
        if remaining <= 0:
            self.events.append(EventNote.normal(Reason.TTL_EXPIRED, f"finished {ttl}s ago: deleting the FineTuneJob"))
            self.actions.append(DeleteFineTuneJob())
        else:
            self._look_again(remaining)

    def _deadline_passed(self) -> bool:
        assert self.spec is not None
        limit, started = self.spec.active_deadline_seconds, self.status.start_time
        if limit is None or started is None:
            return False
        remaining = (started + timedelta(seconds=limit) - self.now).total_seconds()
        if remaining > 0:
            self._look_again(remaining)
            return False
        self._account_gpu_time()
        self._fail(
            JobError(
                error_class=ErrorClass.INTERNAL,
                reason=Reason.DEADLINE_EXCEEDED,
                message=f"the job ran longer than activeDeadlineSeconds ({limit}s)",
                hint="raise spec.activeDeadlineSeconds, or train less (nEpochs, data) per job",
                stage=self.status.stage,
                retryable=False,
            )
        )
        return True

    # -- Pending: resolve ------------------------------------------------------------------

    def _validate(self) -> None:
        if self.status.phase is None:
            self._update(phase=Phase.PENDING)
        problem = self.resolution.problem
        if problem == Unresolved.TEMPLATE_NOT_FOUND:
            if self._reason(ConditionType.VALIDATED) != Reason.TEMPLATE_NOT_FOUND:
                self.events.append(EventNote.warning(Reason.TEMPLATE_NOT_FOUND, self.resolution.message))
            self._condition(ConditionType.VALIDATED, FALSE, Reason.TEMPLATE_NOT_FOUND, self.resolution.message)
            self._look_again(self.settings.template_retry_seconds)
            return
        if problem == Unresolved.TEMPLATE_LIMIT_EXCEEDED:
            self._fail(
                self._input_error(
                    Reason.TEMPLATE_LIMIT_EXCEEDED,
                    "change the fields listed, or name a template whose limits allow them",
                )
            )
            return
        resolved = self.resolution.job or self.resolution.provisional
        if resolved is None:  # auto with an empty catalog: nothing to preflight against yet
            self._look_again(self.settings.template_retry_seconds)
            return
        if self.resolution.job is not None:
            self._update(resolved=resolved.status_resolved())
            self._add_warnings(resolved.warnings)
        if resolved.preflight or self.resolution.job is None:
            self._update(phase=Phase.VALIDATING)
            self._condition(ConditionType.VALIDATED, UNKNOWN, Reason.PREFLIGHT_RUNNING, "checking model and data")
            self.events.append(
                EventNote.normal(
                    Reason.PREFLIGHT_RUNNING,
                    f"checking {resolved.model_repo}@{resolved.revision} and the data on CPU before any GPU is held",
                )
            )
            self.actions.append(CreatePreflight())
            return
        self._condition(ConditionType.VALIDATED, TRUE, Reason.PREFLIGHT_SKIPPED, "preflight off for this template")
        self._start_attempt(1)

    # -- Validating: the preflight ---------------------------------------------------------

    def _preflight(self) -> None:
        run = self.seen.preflight
        if run.state == RunState.FAILED:
            error = run.error or self._internal(Reason.CRASHED, "the preflight failed without a reason")
            self._condition(ConditionType.VALIDATED, FALSE, Reason.PREFLIGHT_FAILED, error.message)
            self._fail(error.model_copy(update={"retryable": False}))
            return
        if run.state != RunState.SUCCEEDED:
            if run.state == RunState.ABSENT:
                self.actions.append(CreatePreflight())
            return
        facts = self.seen.model_facts
        if self.resolution.problem == Unresolved.TEMPLATE_LIMIT_EXCEEDED:
            self._condition(ConditionType.VALIDATED, FALSE, Reason.TEMPLATE_LIMIT_EXCEEDED, self.resolution.message)
            self._fail(self._input_error(Reason.TEMPLATE_LIMIT_EXCEEDED, "change the fields listed"))
            return
        resolved = self.resolution.job
        if resolved is None:
            if self.resolution.problem == Unresolved.TEMPLATE_NOT_FOUND:
                self._look_again(self.settings.template_retry_seconds)
                return
            self._fail(self._internal(Reason.PREFLIGHT_FAILED, "the preflight passed but reported no model facts"))
            return
        result_warnings = run.result.warnings if run.result is not None else []
        if self.spec is not None and self.spec.model == AUTO_TEMPLATE:
            result_warnings = [w for w in result_warnings if w.reason not in _PROVISIONAL_WARNINGS]
        self._update(resolved=resolved.status_resolved(facts))
        self._condition(ConditionType.VALIDATED, TRUE, Reason.PREFLIGHT_PASSED, "model and data checked")
        self.events.append(EventNote.normal(Reason.PREFLIGHT_PASSED, f"model and data checked: {resolved.model_repo}"))
        self._add_warnings([*resolved.warnings, *result_warnings])
        self._start_attempt(1)

    # -- Queued and Running: attempts ------------------------------------------------------

    def _start_attempt(self, attempt: int) -> None:
        if self.resolution.job is None:
            self._look_again(self.settings.template_retry_seconds)
            return
        resume = self._resume_point(attempt)
        self._update(
            phase=Phase.QUEUED,
            attempt=attempt,
            start_time=self.status.start_time or self.now,
            stage=None,
            stages=[],
            progress=None,
            error=None,
        )
        self._condition(ConditionType.SCHEDULED, FALSE, Reason.ATTEMPT_CREATED, f"attempt {attempt} created")
        self._condition(ConditionType.RUNNING, FALSE, Reason.NOT_RUNNING, f"attempt {attempt} not running yet")
        where = f", resuming from {resume}" if resume else ""
        self.events.append(EventNote.normal(Reason.ATTEMPT_CREATED, f"attempt {attempt} created{where}"))
        self.actions.append(CreateAttempt(attempt=attempt, resume_from=resume))

    def _resume_point(self, attempt: int) -> str | None:
        if attempt > 1 and self.status.checkpoints:
            return f"{self.job.name}:{self.status.checkpoints[-1].step}"
        return None

    def _attempt(self) -> None:
        attempt = self.status.attempt
        if self._reason(ConditionType.SCHEDULED) == Reason.RETRY_BACKOFF:
            self._wait_for_retry(attempt)
            return
        run = self.seen.trainer if self.seen.attempt == attempt else RunObservation(state=RunState.ABSENT)
        if run.state == RunState.ABSENT:
            if self.status.phase == Phase.RUNNING:
                self._attempt_failed(
                    self._internal(Reason.PREEMPTED, f"attempt {attempt}'s Job disappeared", retryable=True), run
                )
            else:
                self.actions.append(CreateAttempt(attempt=attempt, resume_from=self._resume_point(attempt)))
        elif run.state == RunState.AWAITING_ADMISSION:
            self._queued(Reason.AWAITING_ADMISSION, run.message, warn=False)
        elif run.state == RunState.UNSCHEDULABLE:
            self._queued(Reason.UNSCHEDULABLE, run.message, warn=True)
        elif run.state == RunState.PENDING:
            self._update(phase=Phase.QUEUED)
            self._condition(ConditionType.SCHEDULED, TRUE, Reason.PODS_SCHEDULED, "pods scheduled, starting")
        elif run.state == RunState.RUNNING:
            self._running(run)
        elif run.state == RunState.SUCCEEDED:
            self._succeeded(run)
        else:
            self._attempt_failed(run.error or self._internal(Reason.CRASHED, "the attempt failed"), run)

    def _queued(self, reason: Reason, message: str, *, warn: bool) -> None:
        if self._reason(ConditionType.SCHEDULED) != reason:
            note = EventNote.warning if warn else EventNote.normal
            self.events.append(note(reason, message or str(reason)))
        self._update(phase=Phase.QUEUED)
        self._condition(ConditionType.SCHEDULED, FALSE, reason, message)

    def _running(self, run: RunObservation) -> None:
        if self.status.phase != Phase.RUNNING:
            self.events.append(EventNote.normal(Reason.PODS_RUNNING, f"attempt {self.status.attempt} running"))
        self._update(phase=Phase.RUNNING)
        self._condition(ConditionType.SCHEDULED, TRUE, Reason.PODS_SCHEDULED, "every trainer pod scheduled")
        self._announce_stages(finished=False)
        stage = self.status.stage
        self._condition(
            ConditionType.RUNNING, TRUE, str(stage or Reason.PODS_RUNNING), f"attempt {self.status.attempt}"
        )
        self._check_heartbeat(run)

    def _check_heartbeat(self, run: RunObservation) -> None:
        progress = self.status.progress
        if self.status.stage != Stage.TRAINING or progress is None or progress.heartbeat_time is None:
            return
        since = progress.heartbeat_time
        threshold = self.settings.heartbeat_stale_seconds
        silent = (self.now - since).total_seconds()
        if silent < threshold:
            self._look_again(threshold - silent)
            return
        self._attempt_failed(
            self._internal(
                Reason.STALLED,
                f"no training heartbeat for {silent:.0f}s (threshold {threshold:.0f}s) at step {progress.step}",
                retryable=True,
            ),
            run,
        )

    def _succeeded(self, run: RunObservation) -> None:
        self._announce_stages(finished=True)
        self._account_gpu_time(run)
        result = run.result
        changes: dict[str, object] = {"phase": Phase.SUCCEEDED, "completion_time": self.now, "error": None}
        if result is not None and result.output is not None:
            out = result.output
            changes["output_model"] = OutputModel(uri=out.uri, name=out.name, files=out.files, bytes=out.bytes)
        self._update(**changes)
        if result is not None:
            self._add_warnings(result.warnings)
        self._condition(ConditionType.RUNNING, FALSE, Reason.COMPLETED, "training finished")
        self._condition(ConditionType.SUCCEEDED, TRUE, Reason.COMPLETED, "the model is saved")
        self.events.append(EventNote.normal(Reason.COMPLETED, "the job succeeded" + self._output_words()))
        self._finished()

    def _output_words(self) -> str:
        out = self.status.output_model
        return f": {out.name} at {out.uri}" if out is not None else ""

    def _attempt_failed(self, error: JobError, run: RunObservation) -> None:
        assert self.spec is not None
        attempt = self.status.attempt
        error = error if error.stage is not None else error.model_copy(update={"stage": self.status.stage})
        self._announce_stages(finished=False)
        self._account_gpu_time(run)
        self._record_checkpoint(run)
        retries_used = max(attempt - 1, 0)
        if not error.retryable or retries_used >= self.spec.max_retries:
            if error.retryable:
                self.events.append(
                    EventNote.warning(Reason.RETRIES_EXHAUSTED, f"{self.spec.max_retries} retries used: the job fails")
                )
            self._fail(error)
            return
        wait = retry_backoff_seconds(retries_used + 1, self.settings)
        message = (
            f"attempt {attempt} failed ({error.error_class} {error.reason}): {error.message}; "
            f"attempt {attempt + 1} in {wait:.0f}s (retry {retries_used + 1} of {self.spec.max_retries})"
        )
        self._update(phase=Phase.QUEUED, error=error)
        self._condition(ConditionType.SCHEDULED, FALSE, Reason.RETRY_BACKOFF, message)
        self._condition(ConditionType.RUNNING, FALSE, error.reason, error.message)
        self.events.append(EventNote.warning(Reason.RETRYING, message))
        self.actions.append(DeleteAttempt(attempt=attempt))
        self._look_again(wait)

    def _wait_for_retry(self, attempt: int) -> None:
        if self.seen.attempt == attempt and self.seen.trainer.live_pods:
            self.actions.append(DeleteAttempt(attempt=attempt))
        backoff = find_condition(self.status.conditions, ConditionType.SCHEDULED)
        assert backoff is not None
        wait = retry_backoff_seconds(attempt, self.settings)
        remaining = (backoff.last_transition_time + timedelta(seconds=wait) - self.now).total_seconds()
        if remaining > 0:
            self._look_again(remaining)
        else:
            self._start_attempt(attempt + 1)

    # -- Suspended -------------------------------------------------------------------------

    def _suspend(self) -> None:
        attempt = self.status.attempt
        if attempt and (self.status.phase != Phase.SUSPENDED or self.seen.trainer.live_pods):
            self.actions.append(DeleteAttempt(attempt=attempt))
        if self.status.phase == Phase.VALIDATING or self.seen.preflight.live_pods:
            self.actions.append(DeletePreflight())
        if self.status.phase == Phase.SUSPENDED:
            return
        if self.seen.attempt == attempt:
            self._account_gpu_time(self.seen.trainer)
        self._update(phase=Phase.SUSPENDED)
        self._condition(ConditionType.SUSPENDED, TRUE, Reason.SUSPENDED, "spec.suspend is true: pods removed")
        if find_condition(self.status.conditions, ConditionType.RUNNING) is not None:
            self._condition(ConditionType.RUNNING, FALSE, Reason.SUSPENDED, "suspended")
        self.events.append(EventNote.normal(Reason.SUSPENDED, "suspended: pods removed, GPUs released"))

    def _resume(self) -> None:
        self._condition(ConditionType.SUSPENDED, FALSE, Reason.RESUMED, "spec.suspend is false")
        validated = find_condition(self.status.conditions, ConditionType.VALIDATED)
        self.events.append(EventNote.normal(Reason.RESUMED, "resumed"))
        if validated is not None and validated.status == TRUE:
            self._start_attempt(self.status.attempt + 1)
        else:
            self._update(phase=Phase.PENDING)
            self._validate()

    # -- endings ---------------------------------------------------------------------------

    def _fail(self, error: JobError) -> None:
        self._update(phase=Phase.FAILED, error=error, completion_time=self.now)
        if find_condition(self.status.conditions, ConditionType.RUNNING) is not None:
            self._condition(ConditionType.RUNNING, FALSE, error.reason, error.message)
        self._condition(ConditionType.FAILED, TRUE, error.reason, error.message)
        hint = f" Hint: {error.hint}" if error.hint else ""
        self.events.append(EventNote.warning(error.reason, f"{error.error_class}: {error.message}.{hint}"))
        if self.status.attempt:
            self.actions.append(DeleteAttempt(attempt=self.status.attempt))
        if self.seen.preflight.live_pods:
            self.actions.append(DeletePreflight())
        ttl = self.spec.ttl_seconds_after_finished if self.spec is not None else None
        if ttl is not None:
            self._look_again(float(ttl))

    def _announce_stages(self, *, finished: bool) -> None:
        announced = announced_stage(self._reason(ConditionType.RUNNING))
        self.events.extend(
            stage_events(announced=announced, current=self.status.stage, stages=self.status.stages, finished=finished)
        )

    def _account_gpu_time(self, run: RunObservation | None = None) -> None:
        seen = run if run is not None else self.seen.trainer
        gpus = self.status.resolved.gpus_per_node if self.status.resolved is not None else None
        if not seen.pod_seconds or not gpus:
            return
        self._update(gpu_seconds=round((self.status.gpu_seconds or 0.0) + seen.pod_seconds * gpus, 3))

    def _record_checkpoint(self, run: RunObservation) -> None:
        step = run.result.checkpoint_step if run.result is not None else None
        uri = self.resolution.job.checkpoint_uri if self.resolution.job is not None else None
        if step is None or uri is None or any(c.step == step for c in self.status.checkpoints):
            return
        record = CheckpointRecord(step=step, uri=uri, time=self.now)
        self._update(checkpoints=[*self.status.checkpoints, record])

    def _add_warnings(self, found: list[WarningNote]) -> None:
        known = {(w.reason, w.message) for w in self.status.warnings}
        new = [w for w in found if (w.reason, w.message) not in known]
        for warning in new:
            known.add((warning.reason, warning.message))
            self.events.append(EventNote.warning(warning.reason, warning.message))
        if new:
            self._update(warnings=[*self.status.warnings, *new])

    def _input_error(self, reason: Reason, hint: str) -> JobError:
        return JobError(
            error_class=ErrorClass.INVALID_INPUT,
            reason=reason,
            message=self.resolution.message or "the spec is invalid",
            hint=hint,
            retryable=False,
        )

    def _internal(self, reason: Reason, message: str, *, retryable: bool = False) -> JobError:
        return JobError(
            error_class=ErrorClass.INTERNAL,
            reason=reason,
            message=message,
            hint=f"report FineTuneJob UID {self.job.uid} if it persists",
            stage=self.status.stage,
            retryable=retryable,
        )
