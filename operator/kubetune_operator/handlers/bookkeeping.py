"""Metrics from one reconcile step: phase, failures, retries and stage durations, once each."""

from __future__ import annotations

import re

from ..api.conditions import Reason
from ..api.status import FineTuneJobStatus
from ..metrics import OperatorMetrics
from ..transitions import Step
from .view import JobKey

_STAGE_FINISHED = re.compile(r"^stage (?P<stage>\w+) finished")


def record_step(metrics: OperatorMetrics, key: JobKey, *, old: FineTuneJobStatus, step: Step) -> None:
    new = step.status
    metrics.job_phase(key, new.phase.value if new.phase is not None else None)
    error = new.error
    if error is not None and error != old.error:
        metrics.failures.labels(error_class=error.error_class.value, stage=str(error.stage or "None")).inc()
    for note in step.events:
        if note.reason == Reason.RETRYING and error is not None:
            metrics.retries.labels(reason=error.reason).inc()
        elif note.reason == Reason.STAGE_FINISHED and (match := _STAGE_FINISHED.match(note.message)):
            record = next((r for r in new.stages if r.name == match["stage"]), None)
            if record is not None and record.start_time is not None and record.end_time is not None:
                seconds = (record.end_time - record.start_time).total_seconds()
                metrics.stage_duration.labels(stage=record.name.value).observe(max(0.0, seconds))
