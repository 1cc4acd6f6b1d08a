"""The status being computed in one step of the state machine, with the Events and actions it brings.

The machine never patches anything itself: it edits a draft (immutable models, replaced on
every change), and the shell receives the result as a `Step` and patches once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import Field

from kubetune_trainer.contract import JobError, Stage, WarningNote, WireModel

from ..api.conditions import EventNote, Reason, find_condition, with_condition
from ..api.error_table import operator_error
from ..api.spec import FineTuneJobSpec
from ..api.status import TERMINAL_PHASES, CheckpointRecord, ConditionStatus, ConditionType, FineTuneJobStatus, Phase
from ..observe.observation import Observation, RunObservation
from ..observe.pod_state import seconds_left
from ..resolve.resolution import Resolution
from ..settings import OperatorSettings
from .actions import Action, DeleteAttempt, DeletePreflight, RequeueAfter
from .progress_record import CHECKPOINTS_KEPT, kept_newest, progress_events, with_reports
from .stage_events import announced_stage, stage_transitions


class JobFacts(WireModel):
    """The FineTuneJob's identity and metadata the state machine needs."""

    name: str = Field(description="Name of the FineTuneJob.")
    namespace: str = Field(description="Namespace of the FineTuneJob.")
    uid: str = Field(description="UID, quoted in hints for Internal errors.")
    generation: int = Field(1, ge=0, description="metadata.generation, reported as observedGeneration.")


class Step(WireModel):
    """One step of the machine: the status to patch, the Events to post, the actions to apply."""

    status: FineTuneJobStatus = Field(description="The new status (patch only what differs).")
    events: list[EventNote] = Field(default_factory=list, description="Events, in order.")
    actions: list[Action] = Field(default_factory=list, description="Actions, in order.")
    finished_stages: list[Stage] = Field(
        default_factory=list, description="Stages whose finish this step announced (for the duration metric)."
    )


@dataclass(frozen=True)
class Situation:
    """Everything one step reads: the job, its spec and resolution, what the cluster shows, the time."""

    job: JobFacts
    spec: FineTuneJobSpec | None
    resolution: Resolution
    seen: Observation
    now: datetime
    settings: OperatorSettings
    spent_gpu_hours: float | None = None
    """GPU-hours the job's namespace has spent besides this job (lifecycle/budget.py); None: not counted
    (no budget applies, or the job is past the budget's gates)."""


def recordable(moment: datetime) -> datetime:
    """`moment` rounded up to the whole second, the precision status times are stored with."""
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


class StatusDraft:
    """A FineTuneJob status under construction, plus the Events and actions decided so far."""

    def __init__(self, status: FineTuneJobStatus, *, now: datetime, generation: int) -> None:
        self.status = status.model_copy(update={"observed_generation": generation})
        self.now = now
        self.stamp = recordable(now)
        """`now` as status records it: Kubernetes times are whole seconds, and rounding down would let
        a deadline counted from a recorded time (activeDeadlineSeconds, ttlSecondsAfterFinished, a
        retry backoff) fire up to a second early; rounded up, it fires at most a second late."""
        self.generation = generation
        self.events: list[EventNote] = []
        self.actions: list[Action] = []
        self.requeue: float | None = None
        self.finished_stages: list[Stage] = []

    def step(self) -> Step:
        actions = list(self.actions)
        if self.requeue is not None:
            actions.append(RequeueAfter(seconds=max(0.0, self.requeue)))
        return Step(status=self.status, events=self.events, actions=actions, finished_stages=self.finished_stages)

    def update(self, **changes: object) -> None:
        self.status = self.status.model_copy(update=changes)

    def condition(
        self,
        kind: ConditionType,
        state: ConditionStatus,
        reason: str,
        message: str = "",
        *,
        restart_clock: bool = False,
    ) -> None:
        conditions = with_condition(
            self.status.conditions,
            kind,
            state,
            reason=reason,
            message=message,
            now=self.stamp,
            generation=self.generation,
            restart_clock=restart_clock,
        )
        self.update(conditions=conditions)

    def reason(self, kind: ConditionType) -> str | None:
        found = find_condition(self.status.conditions, kind)
        return found.reason if found is not None else None

    def seconds_until(self, since: datetime, seconds: float) -> float:
        """Seconds left until `seconds` after a recorded time `since` (negative once past)."""
        return seconds_left(since, seconds, now=self.now)

    def look_again(self, seconds: float) -> None:
        """Ask for a reconcile in `seconds`; of several asks, the soonest wins."""
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)

    def add_warnings(self, found: list[WarningNote]) -> None:
        """Record warnings not yet in the status, each with one Warning Event."""
        known = {(w.reason, w.message) for w in self.status.warnings}
        new = []
        for warning in found:
            if (warning.reason, warning.message) not in known:
                known.add((warning.reason, warning.message))
                new.append(warning)
                self.events.append(EventNote.warning(warning.reason, warning.message))
        if new:
            self.update(warnings=[*self.status.warnings, *new])

    def announce_stages(self, *, finished: bool) -> None:
        announced = announced_stage(self.reason(ConditionType.RUNNING))
        status = self.status
        events, done = stage_transitions(
            announced=announced, current=status.stage, stages=status.stages, finished=finished
        )
        self.events.extend(events)
        self.finished_stages.extend(stage for stage in done if stage not in self.finished_stages)

    def account_gpu_time(self, run: RunObservation) -> None:
        """Add an ended attempt's GPU time (pod run time x GPUs per pod); called once per attempt end."""
        gpus = self.status.resolved.gpus_per_node if self.status.resolved is not None else None
        if not run.pod_seconds or not gpus:
            return
        self.update(gpu_seconds=round((self.status.gpu_seconds or 0.0) + run.pod_seconds * gpus, 3))

    def record_checkpoint(self, run: RunObservation, *, uri: str | None) -> None:
        """Remember the newest checkpoint an ended attempt reported, so the next one resumes there."""
        step = run.result.checkpoint_step if run.result is not None else None
        if step is None or uri is None or any(c.step == step for c in self.status.checkpoints):
            return
        record = CheckpointRecord(step=step, uri=uri, time=self.stamp, attempt=self.status.attempt or None)
        self.update(checkpoints=kept_newest(self.status.checkpoints, record, keep=CHECKPOINTS_KEPT))

    def record_progress(self, situation: Situation, *, uri: str | None) -> None:
        """List the checkpoints and evaluations the trainer reported (stored under `uri`, the job's
        checkpoint location); post their rate-limited Events."""
        progress = self.status.progress
        if progress is not None:
            self.update(**with_reports(self.status, progress, uri=uri, attempt=self.status.attempt or None))
        # A finished job's values no longer change: what a window withheld is told at once.
        finished = self.status.phase in TERMINAL_PHASES
        interval = 0.0 if finished else situation.settings.progress_event_interval_seconds
        events, announced, wait = progress_events(self.status, now=self.stamp, interval=interval)
        self.events.extend(events)
        self.update(announced=announced)
        if wait is not None and not finished:
            self.look_again(wait)

    def fail(self, error: JobError, *, situation: Situation) -> None:
        """Terminal failure: phase Failed, the error and its hint in the status and an Event, pods freed."""
        self.update(phase=Phase.FAILED, error=error, completion_time=self.stamp)
        if find_condition(self.status.conditions, ConditionType.RUNNING) is not None:
            self.condition(ConditionType.RUNNING, ConditionStatus.FALSE, error.reason, error.message)
        self.condition(ConditionType.FAILED, ConditionStatus.TRUE, error.reason, error.message)
        hint = f" Hint: {error.hint}" if error.hint else ""
        self.events.append(EventNote.warning(error.reason, f"{error.error_class}: {error.message}.{hint}"))
        if self.status.attempt:
            self.actions.append(DeleteAttempt(attempt=self.status.attempt))
        if situation.seen.preflight.live_pods:
            self.actions.append(DeletePreflight())
        spec = situation.spec
        if spec is not None and spec.ttl_seconds_after_finished is not None:
            self.look_again(self.seconds_until(self.stamp, spec.ttl_seconds_after_finished))

    def found(self, reason: Reason, message: str, *, uid: str) -> JobError:
        """An error the operator found, at the current stage: class, retryable and hint from the error table."""
        return operator_error(reason, message, stage=self.status.stage, uid=uid)
