"""The FineTuneJob state machine: (spec, status, resolution, observation, now) -> (status, events, actions).

Pure and total: every input combination gives a step, time is an argument, and the same
inputs give the same step, so a replayed event or a restarted operator repeats nothing.

Phases: Pending -> Validating (the CPU preflight) -> Queued -> Running -> Succeeded | Failed;
from any phase not terminal, Suspended, and Cancelled (terminal, `spec.cancel`).
Terminal phases are sticky: nothing is created for a finished job, whatever happens to its
children. The shell applies the actions and patches the status once, only what changed.
"""

from __future__ import annotations

from datetime import datetime

from kubetune_trainer.contract import JobError

from ..api.conditions import EventNote, Reason, find_condition
from ..api.error_table import operator_error
from ..api.spec import AUTO_TEMPLATE, FineTuneJobSpec
from ..api.status import TERMINAL_PHASES, ConditionStatus, ConditionType, FineTuneJobStatus, Phase
from ..observe.observation import Observation, RunState
from ..resolve.resolution import Resolution, Unresolved, status_resolved
from ..settings import OperatorSettings
from .actions import Action, CreatePreflight, DeleteAttempt, DeleteFineTuneJob, DeletePreflight, EnsureServing
from .attempts import (
    advance_attempt,
    checkpoints_of_this_job,
    previous_attempt_stopping,
    recorded_job,
    retry_backoff_seconds,
    start_attempt,
)
from .budget import hold, over_budget, start_within_budget, wait_for_budget
from .estimate_record import estimate_event, new_estimate
from .serving import serving_wanted
from .status_draft import JobFacts, Situation, StatusDraft, Step

__all__ = ["Action", "JobFacts", "Step", "advance", "retry_backoff_seconds"]

TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN
_PROVISIONAL_WARNINGS = frozenset({"TemplateFamilyMismatch", "TemplateSizeMismatch", "SequenceLengthCapped"})
"""Preflight warnings about the template it ran under; with `model: auto` that one was provisional."""


def advance(
    *,
    job: JobFacts,
    spec: FineTuneJobSpec | None,
    status: FineTuneJobStatus,
    resolution: Resolution,
    observation: Observation,
    now: datetime,
    settings: OperatorSettings,
    spent_gpu_hours: float | None = None,
) -> Step:
    """The next step for a FineTuneJob. `spec` is None when it failed validation (see `resolution`).

    `spent_gpu_hours`: what the job's namespace has spent besides it, when a GPU-hour budget applies (budget.py).
    """
    situation = Situation(
        job=job,
        spec=spec,
        resolution=resolution,
        seen=observation,
        now=now,
        settings=settings,
        spent_gpu_hours=spent_gpu_hours,
    )
    draft = StatusDraft(status, now=now, generation=job.generation)
    draft.record_progress(situation, uri=checkpoints_of_this_job(draft, situation))
    _run(draft, situation)
    if draft.status.phase not in (*TERMINAL_PHASES, Phase.SUSPENDED):
        # A grace running out (an image pull, a preflight's message) brings no event: look again then.
        for run in (observation.preflight, observation.trainer):
            if run.recheck_after is not None:
                draft.look_again(run.recheck_after)
    return draft.step()


def _run(draft: StatusDraft, situation: Situation) -> None:
    phase, spec = draft.status.phase, situation.spec
    if phase in TERMINAL_PHASES:
        _finished(draft, situation)
    elif spec is None or situation.resolution.problem == Unresolved.INVALID_SPEC:
        draft.fail(_input_error(situation, Reason.INVALID_SPEC), situation=situation)
    elif spec.cancel:
        _cancel(draft, situation)
    elif spec.suspend:
        _suspend(draft, situation)
    elif phase == Phase.SUSPENDED:
        _resume(draft, situation)
    elif _deadline_passed(draft, situation, spec):
        return
    elif phase in (None, Phase.PENDING):
        _validate(draft, situation)
    elif phase == Phase.VALIDATING:
        _preflight(draft, situation)
    elif draft.reason(ConditionType.SCHEDULED) == Reason.BUDGET_EXCEEDED:
        wait_for_budget(draft, situation)
    elif not _estimated_over_budget(draft, situation):
        advance_attempt(draft, situation)
        if draft.status.phase == Phase.SUCCEEDED:
            _finished(draft, situation)


def _estimated_over_budget(draft: StatusDraft, situation: Situation) -> bool:
    """Record the GPU-hour estimate once the trainer has counted the tokens; stop the attempt if it does not fit."""
    estimate = new_estimate(draft.status, recorded_job(draft, situation))
    if estimate is None:
        return False
    draft.update(estimate=estimate)
    draft.events.append(estimate_event(estimate))
    message = over_budget(situation, estimate_hours=estimate.gpu_hours)
    if message is None:
        return False
    hold(draft, situation, message)
    return True


def _finished(draft: StatusDraft, situation: Situation) -> None:
    """Sticky: only make sure no pod still holds a GPU, and honour ttlSecondsAfterFinished."""
    seen = situation.seen
    if draft.status.phase == Phase.CANCELLED and seen.attempt == draft.status.attempt:
        # A cancelled attempt checkpoints on SIGTERM: keep that step in the record.
        draft.record_checkpoint(seen.trainer, uri=checkpoints_of_this_job(draft, situation))
    if seen.trainer.live_pods and seen.attempt:
        draft.actions.append(DeleteAttempt(attempt=seen.attempt))
    if seen.preflight.live_pods:
        draft.actions.append(DeletePreflight())
    serve_again = serving_wanted(
        situation.spec, draft.status, now=situation.now, poll_seconds=situation.settings.serving_url_poll_seconds
    )
    if serve_again is not None:
        draft.actions.append(EnsureServing())
        if serve_again > 0:
            draft.look_again(serve_again)
    ttl = situation.spec.ttl_seconds_after_finished if situation.spec is not None else None
    done_at = draft.status.completion_time
    if ttl is None or done_at is None:
        return
    remaining = draft.seconds_until(done_at, ttl)
    if remaining > 0:
        draft.look_again(remaining)
        return
    draft.events.append(EventNote.normal(Reason.TTL_EXPIRED, f"finished {ttl}s ago: deleting the FineTuneJob"))
    draft.actions.append(DeleteFineTuneJob())


def _deadline_passed(draft: StatusDraft, situation: Situation, spec: FineTuneJobSpec) -> bool:
    limit, started = spec.active_deadline_seconds, draft.status.start_time
    if limit is None or started is None:
        return False
    remaining = draft.seconds_until(started, limit)
    if remaining > 0:
        draft.look_again(remaining)
        return False
    _account_live_attempt(draft, situation)
    expired = draft.found(
        Reason.DEADLINE_EXCEEDED, f"the job ran longer than activeDeadlineSeconds ({limit}s)", uid=situation.job.uid
    )
    draft.fail(expired, situation=situation)
    return True


def _account_live_attempt(draft: StatusDraft, situation: Situation) -> None:
    """Add the GPU time of an attempt cut short, unless its end was counted already (it failed, a retry waits)."""
    if situation.seen.attempt != draft.status.attempt or draft.reason(ConditionType.SCHEDULED) == Reason.RETRY_BACKOFF:
        return
    draft.account_gpu_time(situation.seen.trainer)


def _validate(draft: StatusDraft, situation: Situation) -> None:
    """Pending: resolve the template, then hand over to the preflight (or straight to attempt 1)."""
    resolution, settings = situation.resolution, situation.settings
    if draft.status.phase is None:
        draft.update(phase=Phase.PENDING)
    if resolution.problem == Unresolved.TEMPLATE_NOT_FOUND:
        if draft.reason(ConditionType.VALIDATED) != Reason.TEMPLATE_NOT_FOUND:
            draft.events.append(EventNote.warning(Reason.TEMPLATE_NOT_FOUND, resolution.message))
        draft.condition(ConditionType.VALIDATED, FALSE, Reason.TEMPLATE_NOT_FOUND, resolution.message)
        # In status.error at once, so `kubectl get ftj` shows it (ERROR, REASON); retryable: the job
        # proceeds by itself once the template exists, and the error is cleared then.
        draft.update(error=_template_not_found(situation))
        draft.look_again(settings.template_retry_seconds)
        return
    if draft.status.error is not None and draft.status.error.reason == Reason.TEMPLATE_NOT_FOUND:
        draft.update(error=None)
    if resolution.problem == Unresolved.TEMPLATE_LIMIT_EXCEEDED:
        draft.fail(_input_error(situation, Reason.TEMPLATE_LIMIT_EXCEEDED), situation=situation)
        return
    runs = resolution.preflight_job
    if runs is None:  # `auto` with no template installed yet
        draft.look_again(settings.template_retry_seconds)
        return
    if resolution.job is not None:
        # A preview until admission; with no preflight to wait for, this is admission.
        draft.update(resolved=status_resolved(resolution.job, record=not runs.preflight))
        draft.add_warnings(resolution.job.warnings)
    if runs.preflight or resolution.job is None:
        draft.update(phase=Phase.VALIDATING)
        draft.condition(ConditionType.VALIDATED, UNKNOWN, Reason.PREFLIGHT_RUNNING, "checking model and data")
        checking = f"checking {runs.model_repo}@{runs.revision} and the data on CPU before any GPU is held"
        draft.events.append(EventNote.normal(Reason.PREFLIGHT_RUNNING, checking))
        draft.actions.append(CreatePreflight())
        return
    draft.condition(ConditionType.VALIDATED, TRUE, Reason.PREFLIGHT_SKIPPED, "preflight off for this template")
    start_within_budget(draft, situation, 1)


def _preflight(draft: StatusDraft, situation: Situation) -> None:
    """Validating: invalid input ends the job with no GPU pod, an Internal failure reruns; a pass starts attempt 1."""
    run, resolution = situation.seen.preflight, situation.resolution
    if draft.reason(ConditionType.VALIDATED) == Reason.RETRY_BACKOFF:
        _wait_for_preflight_retry(draft, situation)
        return
    if run.state == RunState.FAILED:
        error = run.error or draft.found(Reason.CRASHED, "the preflight failed", uid=situation.job.uid)
        _preflight_failed(draft, situation, error)
        return
    if run.state != RunState.SUCCEEDED:
        if run.state == RunState.ABSENT:
            draft.actions.append(CreatePreflight())
        return
    if resolution.problem == Unresolved.TEMPLATE_LIMIT_EXCEEDED:  # e.g. maxSeqLength over the model's positions
        draft.condition(ConditionType.VALIDATED, FALSE, Reason.TEMPLATE_LIMIT_EXCEEDED, resolution.message)
        draft.fail(_input_error(situation, Reason.TEMPLATE_LIMIT_EXCEEDED), situation=situation)
        return
    resolved = resolution.job
    if resolved is None:
        if resolution.problem == Unresolved.TEMPLATE_NOT_FOUND:
            draft.look_again(situation.settings.template_retry_seconds)
            return
        missing = "the preflight passed but reported no model facts"
        draft.fail(draft.found(Reason.PREFLIGHT_FAILED, missing, uid=situation.job.uid), situation=situation)
        return
    warnings = run.result.warnings if run.result is not None else []
    # Resolution already compared the model with its template; with `model: auto` the
    # preflight's own comparison was against the provisional template and is dropped.
    compared = {w.reason for w in resolved.warnings} if situation.seen.model_facts else set()
    if situation.spec is not None and situation.spec.model == AUTO_TEMPLATE:
        compared |= _PROVISIONAL_WARNINGS
    warnings = [w for w in warnings if w.reason not in compared]
    # Admission: the whole resolution, with the commit the preflight found, is what runs from now on.
    draft.update(resolved=status_resolved(resolved, situation.seen.model_facts, record=True))
    draft.condition(ConditionType.VALIDATED, TRUE, Reason.PREFLIGHT_PASSED, "model and data checked")
    draft.events.append(EventNote.normal(Reason.PREFLIGHT_PASSED, f"model and data checked: {resolved.model_repo}"))
    draft.add_warnings([*resolved.warnings, *warnings])
    start_within_budget(draft, situation, 1)


def _preflight_failed(draft: StatusDraft, situation: Situation, error: JobError) -> None:
    """Invalid input ends the job; an Internal (retryable) failure runs the preflight again after a backoff."""
    assert situation.spec is not None
    retries, most = draft.status.preflight_retries, situation.spec.max_retries
    if not error.retryable or retries >= most:
        if error.retryable:
            exhausted = f"preflight: {most} retries used: the job fails"
            draft.events.append(EventNote.warning(Reason.RETRIES_EXHAUSTED, exhausted))
        draft.condition(ConditionType.VALIDATED, FALSE, Reason.PREFLIGHT_FAILED, error.message)
        draft.fail(error, situation=situation)
        return
    wait = retry_backoff_seconds(retries + 1, situation.settings)
    message = (
        f"preflight failed ({error.error_class} {error.reason}): {error.message}; "
        f"it runs again in {wait:.0f}s (retry {retries + 1} of {most})"
    )
    draft.update(preflight_retries=retries + 1, error=error)
    draft.condition(ConditionType.VALIDATED, FALSE, Reason.RETRY_BACKOFF, message, restart_clock=True)
    draft.events.append(EventNote.warning(Reason.RETRYING, message))
    draft.actions.append(DeletePreflight())
    draft.look_again(wait)


def _wait_for_preflight_retry(draft: StatusDraft, situation: Situation) -> None:
    backoff = find_condition(draft.status.conditions, ConditionType.VALIDATED)
    assert backoff is not None
    wait = retry_backoff_seconds(draft.status.preflight_retries, situation.settings)
    remaining = draft.seconds_until(backoff.last_transition_time, wait)
    if situation.seen.preflight.state != RunState.ABSENT:
        draft.actions.append(DeletePreflight())  # its deletion's event wakes the job again
        if remaining <= 0:
            return
    if remaining > 0:
        draft.look_again(remaining)
        return
    draft.update(error=None)
    draft.condition(ConditionType.VALIDATED, UNKNOWN, Reason.PREFLIGHT_RUNNING, "checking model and data again")
    draft.events.append(EventNote.normal(Reason.PREFLIGHT_RUNNING, "preflight runs again"))
    draft.actions.append(CreatePreflight())


def _suspend(draft: StatusDraft, situation: Situation) -> None:
    seen, attempt, phase = situation.seen, draft.status.attempt, draft.status.phase
    if attempt and (phase != Phase.SUSPENDED or seen.trainer.live_pods):
        draft.actions.append(DeleteAttempt(attempt=attempt))
    if phase == Phase.VALIDATING or seen.preflight.live_pods:
        draft.actions.append(DeletePreflight())
    if phase == Phase.SUSPENDED:
        return
    _account_live_attempt(draft, situation)
    draft.update(phase=Phase.SUSPENDED)
    draft.condition(ConditionType.SUSPENDED, TRUE, Reason.SUSPENDED, "spec.suspend is true: pods removed")
    if find_condition(draft.status.conditions, ConditionType.RUNNING) is not None:
        draft.condition(ConditionType.RUNNING, FALSE, Reason.SUSPENDED, "suspended")
    draft.events.append(EventNote.normal(Reason.SUSPENDED, "suspended: pods removed, GPUs released"))


def _cancel(draft: StatusDraft, situation: Situation) -> None:
    """Terminal: the pods go as for suspend, the record (status, checkpoints, output so far) stays."""
    if draft.status.attempt:
        draft.actions.append(DeleteAttempt(attempt=draft.status.attempt))
    if draft.status.phase == Phase.VALIDATING or situation.seen.preflight.live_pods:
        draft.actions.append(DeletePreflight())
    if draft.status.phase != Phase.SUSPENDED:
        _account_live_attempt(draft, situation)
    draft.update(phase=Phase.CANCELLED, completion_time=draft.stamp)
    if find_condition(draft.status.conditions, ConditionType.RUNNING) is not None:
        draft.condition(ConditionType.RUNNING, FALSE, Reason.CANCELLED, "cancelled")
    kept = f"; checkpoints kept (newest step {draft.status.checkpoints[-1].step})" if draft.status.checkpoints else ""
    message = f"spec.cancel is true: pods removed, GPUs released{kept}"
    draft.condition(ConditionType.CANCELLED, TRUE, Reason.CANCELLED, message)
    draft.events.append(EventNote.normal(Reason.CANCELLED, message))
    ttl = situation.spec.ttl_seconds_after_finished if situation.spec is not None else None
    if ttl is not None:
        draft.look_again(draft.seconds_until(draft.stamp, ttl))


def _resume(draft: StatusDraft, situation: Situation) -> None:
    if previous_attempt_stopping(draft, situation, draft.status.attempt + 1):
        return  # still Suspended until the suspended attempt's last pod is gone
    draft.condition(ConditionType.SUSPENDED, FALSE, Reason.RESUMED, "spec.suspend is false")
    draft.events.append(EventNote.normal(Reason.RESUMED, "resumed"))
    # As a batch Job's: resuming starts startTime, and activeDeadlineSeconds with it, again.
    draft.update(start_time=None)
    validated = find_condition(draft.status.conditions, ConditionType.VALIDATED)
    if validated is not None and validated.status == TRUE:
        start_attempt(draft, situation, draft.status.attempt + 1)
    else:
        draft.update(phase=Phase.PENDING)
        _validate(draft, situation)


def _template_not_found(situation: Situation) -> JobError:
    return operator_error(Reason.TEMPLATE_NOT_FOUND, situation.resolution.message, uid=situation.job.uid)


def _input_error(situation: Situation, reason: Reason) -> JobError:
    return operator_error(reason, situation.resolution.message or "the spec is invalid", uid=situation.job.uid)
