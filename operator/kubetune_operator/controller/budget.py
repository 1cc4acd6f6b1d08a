"""What a namespace has spent against its GPU-hour budget, from the indexes (lifecycle/budget.py defines it)."""

from __future__ import annotations

from ..api.conditions import Reason
from ..api.status import TERMINAL_PHASES, ConditionType, FineTuneJobStatus, Phase
from ..lifecycle.budget import charged_gpu_hours
from ..settings import OperatorSettings
from .cache import ClusterView, JobKey


def at_a_budget_gate(status: FineTuneJobStatus) -> bool:
    """Whether this pass may decide on the budget: before attempt 1, waiting for it, or until the estimate is in."""
    if status.phase in TERMINAL_PHASES or status.phase == Phase.SUSPENDED:
        return False
    if status.phase in (None, Phase.PENDING, Phase.VALIDATING) or status.estimate is None:
        return True
    scheduled = next((c for c in status.conditions if c.type == ConditionType.SCHEDULED), None)
    return scheduled is not None and scheduled.reason == Reason.BUDGET_EXCEEDED


def spent_gpu_hours(
    view: ClusterView, key: JobKey, status: FineTuneJobStatus, *, settings: OperatorSettings
) -> float | None:
    """GPU-hours the other FineTuneJobs of `key`'s namespace count against its budget; None when no budget applies.

    Counted only at a budget gate: one pass over the namespace's jobs, not on every progress report.
    """
    namespace = key[0]
    if settings.gpu_hour_budget(namespace) is None or not at_a_budget_gate(status):
        return None
    total = 0.0
    for other in view.jobs():
        if other[0] != namespace or other == key:
            continue
        body = view.job(other)
        if body is not None:
            total += charged_gpu_hours(body.get("status") or {})
    return total
