"""Pods, batch Jobs and termination messages -> an `Observation`: what the cluster says happened.

Pure: the caller lists the objects (as the API returns them) and passes the time. Each pod is
classified once (`pod_state`); here the pods of one run add up to one state, one error (the
trainer's own Result first) and the run's pod time, which becomes gpuSeconds.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import Field

from kubetune_trainer.contract import JobError, ModelFacts, Result, WireModel

from ..api.conditions import Reason
from ..api.error_table import operator_error
from ..settings import OperatorSettings
from .pod_state import Manifest, PodView, completion_index, parse_time


class RunState(enum.StrEnum):
    """Where a run (the preflight, or one attempt) stands."""

    ABSENT = "Absent"
    AWAITING_ADMISSION = "AwaitingAdmission"
    UNSCHEDULABLE = "Unschedulable"
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class RunObservation(WireModel):
    """One run as its batch Job and pods show it."""

    state: RunState = Field(description="Where the run stands.")
    message: str = Field("", description="The scheduler's or Kueue's words, when waiting.")
    result: Result | None = Field(None, description="The decisive termination message (rank 0 first).")
    error: JobError | None = Field(None, description="Why the run failed, classified.")
    started_at: datetime | None = Field(None, description="When the first container started.")
    finished_at: datetime | None = Field(None, description="When the last container finished.")
    pod_seconds: float = Field(0.0, ge=0.0, description="Container run time summed over pods, up to now.")
    live_pods: int = Field(0, ge=0, description="Pods not yet finished: they may hold GPUs.")
    scheduled: bool = Field(False, description="Every pod of the run has been placed on a node.")
    recheck_after: float | None = Field(
        None, ge=0.0, description="Look again in this many seconds: a grace runs out that no event will announce."
    )

    @property
    def done(self) -> bool:
        return self.state in (RunState.SUCCEEDED, RunState.FAILED)


ABSENT = RunObservation(state=RunState.ABSENT)


class Observation(WireModel):
    """What the cluster shows for a FineTuneJob: its preflight and its current attempt."""

    preflight: RunObservation = Field(ABSENT, description="The preflight Job and pod.")
    attempt: int = Field(0, ge=0, description="The attempt observed; 0: none.")
    trainer: RunObservation = Field(ABSENT, description="The attempt's Job and pods.")
    attempt_pods_present: int = Field(
        0,
        ge=0,
        description="Pods of the attempt that still exist, whatever their phase or owner (Terminating ones "
        "included): the next attempt starts only at 0, so two attempts never write checkpoints at once.",
    )

    @property
    def attempt_stopping(self) -> bool:
        """Whether anything of the observed attempt remains: its Job, or any of its pods."""
        return self.trainer.state != RunState.ABSENT or self.attempt_pods_present > 0

    @property
    def model_facts(self) -> ModelFacts | None:
        """config.json facts the preflight found, for `model: auto` and status.resolved."""
        result = self.preflight.result
        return result.model if result is not None else None


def observe(
    *,
    preflight_job: Manifest | None,
    preflight_pods: Sequence[Manifest],
    attempt: int,
    attempt_job: Manifest | None,
    attempt_pods: Sequence[Manifest],
    now: datetime,
    settings: OperatorSettings,
    attempt_pods_present: int | None = None,
) -> Observation:
    """Observe the preflight and attempt `attempt` (their Jobs may be None when absent)."""
    pull_grace, result_grace = settings.image_pull_grace_seconds, settings.result_grace_seconds
    graces = {"image_pull_grace": pull_grace, "result_grace": result_grace}
    preflight = observe_run(preflight_job, preflight_pods, now=now, **graces)
    trainer = observe_run(attempt_job, attempt_pods, now=now, **graces) if attempt else ABSENT
    return Observation(
        preflight=_with_result(preflight, preflight_job, now=now, grace=result_grace),
        attempt=attempt,
        trainer=trainer,
        attempt_pods_present=len(attempt_pods) if attempt_pods_present is None else attempt_pods_present,
    )


def observe_run(
    job: Manifest | None,
    pods: Sequence[Manifest],
    *,
    now: datetime,
    image_pull_grace: float,
    result_grace: float = 0.0,
) -> RunObservation:
    """One batch Job and its pods -> a RunObservation.

    `result_grace`: how long a Complete or Failed Job whose pod still looks running waits for that
    pod's update when the pods' word is missing (rank 0's Result, which names the output model; the
    failed pod's, which names the error class) before the Job's own word decides.
    """
    if job is None and not pods:
        return ABSENT
    ordered = sorted(pods, key=completion_index)
    views = [PodView.of(pod, now=now, image_pull_grace=image_pull_grace) for pod in ordered]
    timing = _timing(views, now=now)
    live = sum(1 for v in views if not v.finished)
    ended_at = _job_condition_time(job, "Complete") or _job_condition_time(job, "Failed")
    lagging = bool(live) and ended_at is not None
    if lagging:
        # The Job controller marks a Job Complete or Failed only once none of its pods runs: a pod
        # that still looks running here is this operator's view lagging (Jobs and pods come on
        # separate watches), and holds no GPU. Counting it live would delete the pods, and their logs.
        live = 0
    expected = int((job or {}).get("spec", {}).get("completions") or len(views) or 1)
    rank0 = next((v.result for v in views if v.result is not None), None)

    if job is not None and job.get("spec", {}).get("suspend") and _job_condition(job, "Complete") is None:
        # Kueue has not admitted the Job yet, or took the admission back (preempting it): its pods
        # are stopped by the Job controller, and this is queueing, not a failure of the attempt.
        waiting = "Kueue suspended the Job; its pods are stopping" if views else "waiting for Kueue to admit the Job"
        return RunObservation(state=RunState.AWAITING_ADMISSION, message=waiting, live_pods=live, **timing)
    failed = [v for v in views if v.error is not None]
    if failed:
        # The trainer's own words beat a bare exit code: prefer a pod whose Result explains the failure.
        chosen = next((v for v in failed if v.result is not None and v.result.error is not None), failed[0])
        return RunObservation(state=RunState.FAILED, error=chosen.error, result=chosen.result, live_pods=live, **timing)
    job_failure = _job_condition(job, "Failed")
    if lagging and ended_at is not None and (job_failure is not None or rank0 is None):
        waited = (now - ended_at).total_seconds()
        if waited < result_grace:  # the pods' word is on its way: "still finishing"
            wait = min(RESULT_RECHECK_SECONDS, result_grace - waited)
            return RunObservation(state=RunState.RUNNING, live_pods=0, recheck_after=wait, **timing)
    if job_failure is not None:
        error = operator_error(Reason.CRASHED, f"the batch Job failed ({job_failure}) and left no termination message")
        return RunObservation(state=RunState.FAILED, error=error, live_pods=live, **timing)
    succeeded = sum(1 for v in views if v.succeeded)
    if _job_condition(job, "Complete") is not None or (views and succeeded >= expected):
        return RunObservation(state=RunState.SUCCEEDED, result=rank0, live_pods=live, **timing)
    unschedulable = next((v for v in views if v.unschedulable is not None), None)
    if unschedulable is not None:
        return RunObservation(
            state=RunState.UNSCHEDULABLE, message=unschedulable.unschedulable or "", live_pods=live, **timing
        )
    running = sum(1 for v in views if v.running or v.succeeded)
    state = RunState.RUNNING if views and running >= expected else RunState.PENDING
    graces = [v.grace_left for v in views if v.grace_left is not None]
    placed = len(views) >= expected and all(v.scheduled for v in views)
    recheck = min(graces) if graces else None
    return RunObservation(state=state, live_pods=live, scheduled=placed, recheck_after=recheck, **timing)


RESULT_RECHECK_SECONDS = 2.0
"""How often a Complete or Failed Job waiting for its pod's termination message is looked at again."""


def _with_result(run: RunObservation, job: Manifest | None, *, now: datetime, grace: float) -> RunObservation:
    """A preflight passes only with its Result (the model facts): a Complete Job without one is a failure.

    A pod still looking running was waited for in `observe_run`; a Complete Job with no pod seen at
    all waits here the same way. After `grace`, or at once when the pod is seen ending without a
    message, it is an Internal, retryable failure.
    """
    if run.state != RunState.SUCCEEDED or run.result is not None:
        return run
    if run.finished_at is not None:
        why = "the preflight pod ended without a termination message (its Result)"
    else:
        completed = _job_condition_time(job, "Complete") or now
        waited = (now - completed).total_seconds()
        if waited < grace:
            recheck = min(RESULT_RECHECK_SECONDS, grace - waited)
            return run.model_copy(update={"state": RunState.RUNNING, "recheck_after": recheck})
        why = f"the preflight Job is Complete but its pod's termination message was not seen within {grace:.0f}s"
    error = operator_error(Reason.PREFLIGHT_RESULT_MISSING, why)
    return run.model_copy(update={"state": RunState.FAILED, "error": error})


def _timing(views: Sequence[PodView], *, now: datetime) -> dict[str, Any]:
    starts = [v.started for v in views if v.started is not None]
    ends = [v.ended for v in views if v.ended is not None]
    seconds = sum(max(0.0, ((v.ended or now) - v.started).total_seconds()) for v in views if v.started is not None)
    all_done = bool(views) and all(v.finished for v in views)
    return {
        "started_at": min(starts) if starts else None,
        "finished_at": max(ends) if ends and all_done else None,
        "pod_seconds": seconds,
    }


def _job_condition_time(job: Manifest | None, kind: str) -> datetime | None:
    for condition in ((job or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return parse_time(condition.get("lastTransitionTime"))
    return None


def _job_condition(job: Manifest | None, kind: str) -> str | None:
    """The reason of the Job's `kind` condition when it is True, else None."""
    for condition in ((job or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return str(condition.get("reason") or kind)
    return None
