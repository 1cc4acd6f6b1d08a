"""Metrics from one reconcile step: phase, failures, retries, stage durations and GPU-hours, once each."""

from __future__ import annotations

from datetime import datetime

from ..api.conditions import Reason, find_condition
from ..api.status import ConditionType, FineTuneJobStatus, Phase
from ..lifecycle.transitions import Step
from ..metrics import OperatorMetrics
from .cache import JobKey

SECONDS_PER_HOUR = 3600.0


def record_step(metrics: OperatorMetrics, key: JobKey, *, old: FineTuneJobStatus, step: Step) -> None:
    new = step.status
    metrics.job_phase(key, new.phase.value if new.phase is not None else None, queued_since=queued_since(new))
    error = new.error
    # A job waiting for its template shows TemplateNotFound in status.error, but it has not failed.
    if error is not None and error != old.error and error.reason != Reason.TEMPLATE_NOT_FOUND:
        metrics.failures.labels(error_class=error.error_class.value, stage=str(error.stage or "None")).inc()
    # GPU time is counted as the status grows, from the stored status: a restarted operator counts no hour twice.
    held = (new.gpu_seconds or 0.0) - (old.gpu_seconds or 0.0)
    if held > 0:
        metrics.gpu_hours.labels(namespace=key[0]).inc(held / SECONDS_PER_HOUR)
    for note in step.events:
        if note.reason == Reason.RETRYING and error is not None:
            metrics.retries.labels(reason=error.reason).inc()
    # From the step's structured record of the finishes it announced, never from the Events' words.
    finished = set(step.finished_stages)
    for record in new.stages:
        if record.name in finished and record.start_time is not None and record.end_time is not None:
            seconds = (record.end_time - record.start_time).total_seconds()
            metrics.stage_duration.labels(stage=record.name.value).observe(max(0.0, seconds))


def queued_since(status: FineTuneJobStatus) -> datetime | None:
    """Since when a Queued job waits: its Scheduled condition's last change, read from the status.

    From the status rather than from when this process saw the phase change, so a restarted
    operator reports the same age (and the stuck-queue alert does not start over).
    """
    if status.phase != Phase.QUEUED:
        return None
    scheduled = find_condition(status.conditions, ConditionType.SCHEDULED)
    return scheduled.last_transition_time if scheduled is not None else None
