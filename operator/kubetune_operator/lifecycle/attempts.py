"""Queued and Running: one attempt's life, from creation to success, retry or failure.

A retryable failure waits out an exponential backoff (recorded as the Scheduled condition's
RetryBackoff reason and lastTransitionTime, so a restarted operator keeps the schedule) and
starts attempt k+1 from the newest checkpoint, up to `maxRetries`.
"""

from __future__ import annotations

from kubetune_trainer.contract import JobError, Stage

from ..api.conditions import EventNote, Reason, find_condition
from ..api.record import ResolvedJob
from ..api.status import ConditionStatus, ConditionType, OutputModel, Phase
from ..observe.observation import RunObservation, RunState
from ..resolve.resize import resize_request, resized
from ..resolve.resolution import status_resolved
from ..settings import OperatorSettings
from .actions import CreateAttempt, DeleteAttempt
from .status_draft import Situation, StatusDraft

TRUE, FALSE = ConditionStatus.TRUE, ConditionStatus.FALSE


def retry_backoff_seconds(retry: int, settings: OperatorSettings) -> float:
    """Wait before retry number `retry` (1-based): the base, doubling, capped."""
    doubled = settings.retry_backoff_seconds * float(2 ** max(retry - 1, 0))
    return min(doubled, settings.retry_backoff_cap_seconds)


def recorded_job(draft: StatusDraft, situation: Situation) -> ResolvedJob | None:
    """What every attempt runs: the record stored at admission (None: nothing resolved to record yet).

    A job admitted before records existed gets one now, from its resolution with the commit sha
    its preflight found, so from its next attempt on it too runs one fixed record.
    """
    resolved = draft.status.resolved
    if resolved is not None and resolved.record is not None:
        return resolved.record
    job = situation.resolution.job
    if job is None:
        return None
    sha = resolved.revision_sha if resolved is not None else None
    record = job if sha is None else ResolvedJob.parse({**job.to_wire(), "revisionSha": sha})
    summary = resolved if resolved is not None else status_resolved(job)
    draft.update(resolved=summary.model_copy(update={"record": record, "hash": record.digest()}))
    return record


def previous_attempt_stopping(draft: StatusDraft, situation: Situation, attempt: int) -> bool:
    """Fencing: attempt `attempt` may start only once nothing of attempt `attempt - 1` remains.

    A pod that is Terminating still runs (its SIGTERM checkpoint may be in flight); were the next
    attempt to start beside it, both would write the same job's checkpoints. So its Job is deleted
    (again: idempotent) and the start waits; the pod's deletion wakes the job.
    """
    previous, seen = attempt - 1, situation.seen
    if previous < 1 or seen.attempt != previous or not seen.attempt_stopping:
        return False
    draft.actions.append(DeleteAttempt(attempt=previous))
    draft.look_again(FENCE_RECHECK_SECONDS)
    return True


def _announce_fence(draft: StatusDraft, attempt: int) -> None:
    """Say once why the next attempt has not started: in the Scheduled condition's message and one Event.

    The condition keeps its status and reason (RetryBackoff: the machine still waits to retry) and
    its lastTransitionTime; only the message changes, which is also the memory that the Event was posted.
    """
    waiting = f"attempt {attempt} waits for attempt {attempt - 1}'s pods to be gone (Terminating counts)"
    scheduled = find_condition(draft.status.conditions, ConditionType.SCHEDULED)
    if scheduled is None or scheduled.message == waiting:
        return
    draft.condition(ConditionType.SCHEDULED, scheduled.status, scheduled.reason, waiting)
    draft.events.append(EventNote.normal(Reason.PREVIOUS_ATTEMPT_STOPPING, waiting))


FENCE_RECHECK_SECONDS = 5.0
"""A safety net only: the deletion of the previous attempt's last pod wakes the job by itself."""


def start_attempt(draft: StatusDraft, situation: Situation, attempt: int) -> None:
    if recorded_job(draft, situation) is None:  # the template went away before admission: wait for it
        draft.look_again(situation.settings.template_retry_seconds)
        return
    if previous_attempt_stopping(draft, situation, attempt):
        _announce_fence(draft, attempt)
        return
    if attempt > 1:
        apply_resize(draft, situation, attempt)
    resume = resume_point(draft, situation, attempt)
    draft.update(
        phase=Phase.QUEUED,
        attempt=attempt,
        start_time=draft.status.start_time or draft.stamp,
        stage=None,
        stages=[],
        progress=None,
        error=None,
    )
    draft.condition(ConditionType.SCHEDULED, FALSE, Reason.ATTEMPT_CREATED, f"attempt {attempt} created")
    draft.condition(ConditionType.RUNNING, FALSE, Reason.NOT_RUNNING, f"attempt {attempt} not running yet")
    where = f", resuming from {resume}" if resume else ""
    draft.events.append(EventNote.normal(Reason.ATTEMPT_CREATED, f"attempt {attempt} created{where}"))
    draft.actions.append(CreateAttempt(attempt=attempt, resume_from=resume))


def apply_resize(draft: StatusDraft, situation: Situation, attempt: int) -> None:
    """Resize the record when spec.gpus asks for another count than it holds (`resolve.resize`), before
    attempt `attempt` (a retry or a resume) is rendered from it; a count it cannot take is refused with
    a Warning Event and the attempt runs at the recorded size."""
    record = recorded_job(draft, situation)
    resolved = draft.status.resolved
    wanted = resize_request(record, situation.spec.gpus) if record is not None and situation.spec else None
    if record is None or resolved is None or record.gpu_plan is None or wanted is None:
        return
    try:
        new = resized(record, wanted, parameters=resolved.parameters, shape=resolved.model_shape)
    except ValueError as error:
        draft.events.append(EventNote.warning(Reason.RESIZE_REFUSED, f"attempt {attempt}: {error}"))
        return
    update = {"record": new, "hash": new.digest(), "nodes": new.nodes, "gpus_per_node": new.gpus_per_node}
    draft.update(resolved=resolved.model_copy(update={**update, "gpu_plan": new.gpu_plan}))
    was = record.gpu_plan
    draft.events.append(
        EventNote.normal(
            Reason.RESIZED,
            f"attempt {attempt} holds {wanted} GPU(s) on {new.nodes} node(s), as spec.gpus asks (attempt "
            f"{attempt - 1} held {was.gpus} on {was.nodes}); its checkpoint is resharded on load",
        )
    )


def resume_point(draft: StatusDraft, situation: Situation, attempt: int) -> str | None:
    """Where attempt `attempt` starts: None for a first attempt (the spec's fromCheckpoint applies).

    A later attempt resumes from this job's own checkpoints: `<job>:<step>` when the attempt
    just ended reported its newest step, else `<job>`, the newest the trainer finds under the
    checkpoint location (a suspended or lost attempt reports nothing). Without a checkpoint
    location there is nothing to resume from, and the job carries a warning saying so.
    """
    record = recorded_job(draft, situation)
    checkpoint_uri = record.checkpoint_uri if record is not None else None
    if attempt == 1 or checkpoint_uri is None:
        return None
    # Only the attempt just ended can name the newest step: after a suspend or a lost Job, an
    # older attempt's step would throw away everything trained since.
    newest = draft.status.checkpoints[-1] if draft.status.checkpoints else None
    if newest is not None and newest.attempt == attempt - 1:
        return f"{situation.job.name}:{newest.step}"
    return situation.job.name


def advance_attempt(draft: StatusDraft, situation: Situation) -> None:
    attempt = draft.status.attempt
    if draft.reason(ConditionType.SCHEDULED) == Reason.RETRY_BACKOFF:
        _wait_for_retry(draft, situation, attempt)
        return
    seen = situation.seen
    run = seen.trainer if seen.attempt == attempt else RunObservation(state=RunState.ABSENT)
    if run.state == RunState.ABSENT:
        if draft.status.phase == Phase.RUNNING:
            lost = draft.found(Reason.PREEMPTED, f"attempt {attempt}'s Job disappeared", uid=situation.job.uid)
            _attempt_failed(draft, situation, lost, run)
        else:  # created in an earlier step whose create did not land: create-if-absent again
            draft.actions.append(CreateAttempt(attempt=attempt, resume_from=resume_point(draft, situation, attempt)))
    elif run.state == RunState.AWAITING_ADMISSION:
        _queued(draft, Reason.AWAITING_ADMISSION, run.message, warn=False)
    elif run.state == RunState.UNSCHEDULABLE:
        _queued(draft, Reason.UNSCHEDULABLE, run.message, warn=True)
    elif run.state == RunState.PENDING:
        draft.update(phase=Phase.QUEUED)
        if run.scheduled:  # a Job whose pods do not exist yet, or wait for a node, is not scheduled
            draft.condition(ConditionType.SCHEDULED, TRUE, Reason.PODS_SCHEDULED, "pods scheduled, starting")
    elif run.state == RunState.RUNNING:
        _running(draft, situation, run)
    elif run.state == RunState.SUCCEEDED:
        _succeeded(draft, run)
    else:
        error = run.error or draft.found(Reason.CRASHED, "the attempt failed", uid=situation.job.uid)
        _attempt_failed(draft, situation, error, run)


def _queued(draft: StatusDraft, reason: Reason, message: str, *, warn: bool) -> None:
    if draft.reason(ConditionType.SCHEDULED) != reason:
        note = EventNote.warning if warn else EventNote.normal
        draft.events.append(note(reason, message or str(reason)))
    draft.update(phase=Phase.QUEUED)
    draft.condition(ConditionType.SCHEDULED, FALSE, reason, message)
    running = find_condition(draft.status.conditions, ConditionType.RUNNING)
    if running is not None and running.status == TRUE:  # Kueue took the admission back
        draft.condition(ConditionType.RUNNING, FALSE, reason, message)
        # Its pods are gone; readmitted pods start their stages over, so the old ones' stage and
        # heartbeat must not be judged against them (an hour in the queue would read as Stalled).
        draft.update(stage=None, stages=[], progress=None)


def _running(draft: StatusDraft, situation: Situation, run: RunObservation) -> None:
    attempt = draft.status.attempt
    if draft.status.phase != Phase.RUNNING:
        draft.events.append(EventNote.normal(Reason.PODS_RUNNING, f"attempt {attempt} running"))
    draft.update(phase=Phase.RUNNING)
    draft.condition(ConditionType.SCHEDULED, TRUE, Reason.PODS_SCHEDULED, "every trainer pod scheduled")
    draft.announce_stages(finished=False)
    # The Running reason is the stage last announced: the memory that keeps stage Events one each.
    reason = str(draft.status.stage or Reason.PODS_RUNNING)
    draft.condition(ConditionType.RUNNING, TRUE, reason, f"attempt {attempt}")
    _check_heartbeat(draft, situation, run)


def _check_heartbeat(draft: StatusDraft, situation: Situation, run: RunObservation) -> None:
    progress = draft.status.progress
    if draft.status.stage != Stage.TRAINING or progress is None or progress.heartbeat_time is None:
        return
    threshold = situation.settings.heartbeat_stale_seconds
    # A beat from before the pods last started running (a late report of pods Kueue stopped) is not theirs.
    since = progress.heartbeat_time
    running = find_condition(draft.status.conditions, ConditionType.RUNNING)
    if running is not None and running.status == TRUE and running.last_transition_time > since:
        since = running.last_transition_time
    left = draft.seconds_until(since, threshold)
    if left > 0:
        draft.look_again(left)
        return
    silent = (draft.now - since).total_seconds()
    stalled = draft.found(
        Reason.STALLED,
        f"no training heartbeat for {silent:.0f}s (threshold {threshold:.0f}s) at step {progress.step}",
        uid=situation.job.uid,
    )
    _attempt_failed(draft, situation, stalled, run)


def _succeeded(draft: StatusDraft, run: RunObservation) -> None:
    draft.announce_stages(finished=True)
    draft.account_gpu_time(run)
    result = run.result
    changes: dict[str, object] = {"phase": Phase.SUCCEEDED, "completion_time": draft.stamp, "error": None}
    words = ""
    if result is not None and result.output is not None:
        out = result.output
        changes["output_model"] = OutputModel(uri=out.uri, name=out.name, files=out.files, bytes=out.bytes)
        words = f": {out.name} at {out.uri}"
    draft.update(**changes)
    draft.condition(ConditionType.RUNNING, FALSE, Reason.COMPLETED, "training finished")
    draft.condition(ConditionType.SUCCEEDED, TRUE, Reason.COMPLETED, "the model is saved")
    if draft.events and draft.events[-1].reason == Reason.STAGE_FINISHED:  # one Event for the last transition
        words += f" ({draft.events.pop().message})"
    draft.events.append(EventNote.normal(Reason.COMPLETED, "the job succeeded" + words))
    if result is not None:
        draft.add_warnings(result.warnings)


def _attempt_failed(draft: StatusDraft, situation: Situation, error: JobError, run: RunObservation) -> None:
    spec = situation.spec
    assert spec is not None
    attempt = draft.status.attempt
    if error.stage is None:
        error = error.model_copy(update={"stage": draft.status.stage})
    draft.announce_stages(finished=False)
    draft.account_gpu_time(run)
    if run.result is not None:
        draft.add_warnings(run.result.warnings)
    draft.record_checkpoint(run, uri=checkpoints_of_this_job(draft, situation))
    # Counted apart from the attempt number: a suspend and resume also starts a new attempt.
    retries_used = draft.status.retries
    if not error.retryable or retries_used >= spec.max_retries:
        if error.retryable:
            exhausted = f"{spec.max_retries} retries used: the job fails"
            draft.events.append(EventNote.warning(Reason.RETRIES_EXHAUSTED, exhausted))
        draft.fail(error, situation=situation)
        return
    wait = retry_backoff_seconds(retries_used + 1, situation.settings)
    message = (
        f"attempt {attempt} failed ({error.error_class} {error.reason}): {error.message}; "
        f"attempt {attempt + 1} in {wait:.0f}s (retry {retries_used + 1} of {spec.max_retries})"
    )
    draft.update(phase=Phase.QUEUED, error=error, retries=retries_used + 1)
    draft.condition(ConditionType.SCHEDULED, FALSE, Reason.RETRY_BACKOFF, message, restart_clock=True)
    draft.condition(ConditionType.RUNNING, FALSE, error.reason, error.message)
    draft.events.append(EventNote.warning(Reason.RETRYING, message))
    draft.actions.append(DeleteAttempt(attempt=attempt))
    draft.look_again(wait)


def checkpoints_of_this_job(draft: StatusDraft, situation: Situation) -> str | None:
    """Where this job's checkpoints really are: `<root>/<job>/<uid>` (its uid's, not its name's)."""
    record = recorded_job(draft, situation)
    if record is None or record.checkpoint_uri is None:
        return None
    job = situation.job
    if record.checkpoint_root is None:  # a record from before roots: its location is the job's own
        return f"{record.checkpoint_uri.rstrip('/')}/{job.uid}"
    return f"{record.checkpoint_root.rstrip('/')}/{job.name}/{job.uid}"


def _wait_for_retry(draft: StatusDraft, situation: Situation, attempt: int) -> None:
    seen = situation.seen
    if seen.attempt == attempt and seen.trainer.live_pods:
        draft.actions.append(DeleteAttempt(attempt=attempt))
    backoff = find_condition(draft.status.conditions, ConditionType.SCHEDULED)
    assert backoff is not None
    wait = retry_backoff_seconds(draft.status.retries, situation.settings)
    remaining = draft.seconds_until(backoff.last_transition_time, wait)
    if remaining > 0:
        draft.look_again(remaining)
    else:
        start_attempt(draft, situation, attempt + 1)
