"""Metrics from one reconcile step: phase, failures, retries, stage durations and GPU-hours, once each."""

from __future__ import annotations

import re
from datetime import datetime

from kubetune_trainer.contract import Stage

from ..api.conditions import Reason, find_condition
from ..api.status import ConditionType, FineTuneJobStatus, Phase
from ..lifecycle.transitions import Step
from ..metrics import OperatorMetrics
from .cache import JobKey

_FINISHED = re.compile(r"(?:^stage |; |\(stage )(?P<stage>" + "|".join(Stage) + r") finished\b")
"""A stage's finish as stage Events word it: alone ("stage Training finished in 3s"), after the next
stage's start ("stage Training started; Initialization finished in 3s"), or inside the Completed
Event that absorbs the last one ("the job succeeded ... (stage Training finished in 5s)")."""
SECONDS_PER_HOUR = 3600.0
_CARRY_FINISHES = frozenset({Reason.STAGE_STARTED, Reason.STAGE_FINISHED, Reason.COMPLETED})


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
    finished: set[str] = set()
    for note in step.events:
        if note.reason == Reason.RETRYING and error is not None:
            metrics.retries.labels(reason=error.reason).inc()
        elif note.reason in _CARRY_FINISHES:
            finished.update(match["stage"] for match in _FINISHED.finditer(note.message))
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
