"""The per-namespace GPU-hour budget (settings.gpuHourBudgets): a new job waits Queued while it would not fit.

What a namespace has spent, as the operator counts it from its own records (`charged_gpu_hours`,
summed over the namespace's other FineTuneJobs by the shell): every job's `status.gpuSeconds`
(the GPU time of its ended attempts, the figure `kubetune_gpu_hours_total` counts) plus, for a
job with an attempt under way (Running, or Queued for its GPUs), its `status.estimate`: GPU-hours
it has committed to. A deleted FineTuneJob no longer counts (the metric keeps its hours).

Two gates, both before a job spends much: before attempt 1 is created, spent plus the job's
estimate (none is known yet for a new job, so: spent alone) must not exceed the budget, and when
the trainer's token count gives the estimate (DataDownload), spent plus the estimate must fit,
else the attempt is stopped. Either way the job waits Queued with the Scheduled condition's
reason BudgetExceeded and one Warning Event naming the namespace, the budget, the spent GPU-hours
and what to do; it looks again every `budgetRecheckSeconds` and starts by itself once the job
fits (the budget raised, which restarts the operator, or jobs deleted).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..api.conditions import EventNote, Reason, find_condition
from ..api.status import ConditionStatus, ConditionType, Phase
from .actions import DeleteAttempt
from .attempts import start_attempt
from .status_draft import Situation, StatusDraft

SECONDS_PER_HOUR = 3600.0
_NOT_COMMITTED = frozenset({Reason.BUDGET_EXCEEDED, Reason.RETRY_BACKOFF})


def charged_gpu_hours(status: Mapping[str, Any]) -> float:
    """GPU-hours one job counts against its namespace's budget, from its stored status (raw: one pass per job).

    Ended attempts' GPU time, plus the estimate of an attempt under way.
    """
    spent = float(status.get("gpuSeconds") or 0.0) / SECONDS_PER_HOUR
    estimate = (status.get("estimate") or {}).get("gpuHours")
    if estimate is None:
        return spent
    phase, attempt = status.get("phase"), int(status.get("attempt") or 0)
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    scheduled: dict[str, Any] = next((c for c in conditions if c.get("type") == ConditionType.SCHEDULED), {})
    under_way = phase == Phase.RUNNING or (
        phase == Phase.QUEUED and attempt >= 1 and scheduled.get("reason") not in _NOT_COMMITTED
    )
    return spent + float(estimate) if under_way else spent


def over_budget(situation: Situation, *, estimate_hours: float | None) -> str | None:
    """Why the job does not fit its namespace's budget (the Event's words), or None when it fits."""
    namespace, spent = situation.job.namespace, situation.spent_gpu_hours
    budget = situation.settings.gpu_hour_budget(namespace)
    if budget is None or spent is None:
        return None
    needed = estimate_hours or 0.0
    fits = spent + needed <= budget if estimate_hours is not None else spent < budget
    if fits:
        return None
    mine = f" + this job's estimate {needed:.3g}" if estimate_hours is not None else ""
    return (
        f"job {situation.job.name} waits Queued: namespace {namespace}'s GPU-hour budget {budget:g} is exceeded: "
        f"its other jobs have spent {spent:.3g} GPU-hours{mine}; the job starts by itself once it fits: raise "
        f"gpuHourBudgets for {namespace} in the operator's settings (Helm value settings.gpuHourBudgets), or "
        "delete finished FineTuneJobs of the namespace"
    )


def start_within_budget(draft: StatusDraft, situation: Situation, attempt: int) -> None:
    """Start `attempt`, unless the namespace's budget has no room: then wait Queued (BudgetExceeded)."""
    estimate = draft.status.estimate
    message = over_budget(situation, estimate_hours=estimate.gpu_hours if estimate is not None else None)
    if message is None:
        start_attempt(draft, situation, attempt)
    else:
        hold(draft, situation, message)


def hold(draft: StatusDraft, situation: Situation, message: str) -> None:
    """Wait Queued for the budget; an attempt under way is stopped (its GPU time counted) and its pods removed."""
    attempt, seen = draft.status.attempt, situation.seen
    if attempt and seen.attempt == attempt and draft.reason(ConditionType.SCHEDULED) != Reason.BUDGET_EXCEEDED:
        draft.account_gpu_time(seen.trainer)
        draft.actions.append(DeleteAttempt(attempt=attempt))
        draft.update(stage=None, stages=[], progress=None)
    if draft.reason(ConditionType.SCHEDULED) != Reason.BUDGET_EXCEEDED:
        draft.events.append(EventNote.warning(Reason.BUDGET_EXCEEDED, message))
    draft.update(phase=Phase.QUEUED)
    draft.condition(ConditionType.SCHEDULED, ConditionStatus.FALSE, Reason.BUDGET_EXCEEDED, message)
    running = find_condition(draft.status.conditions, ConditionType.RUNNING)
    if running is not None and running.status == ConditionStatus.TRUE:
        draft.condition(ConditionType.RUNNING, ConditionStatus.FALSE, Reason.BUDGET_EXCEEDED, message)
    draft.look_again(situation.settings.budget_recheck_seconds)


def wait_for_budget(draft: StatusDraft, situation: Situation) -> None:
    """Queued with BudgetExceeded: keep the pods away; once the job fits, start its next attempt."""
    attempt, seen = draft.status.attempt, situation.seen
    if attempt and seen.attempt == attempt and seen.trainer.live_pods:
        draft.actions.append(DeleteAttempt(attempt=attempt))
    estimate = draft.status.estimate
    message = over_budget(situation, estimate_hours=estimate.gpu_hours if estimate is not None else None)
    if message is not None:
        draft.condition(ConditionType.SCHEDULED, ConditionStatus.FALSE, Reason.BUDGET_EXCEEDED, message)
        draft.look_again(situation.settings.budget_recheck_seconds)
        return
    start_attempt(draft, situation, attempt + 1)
    if draft.status.attempt == attempt + 1:  # not while the previous attempt's pods are still going
        namespace = situation.job.namespace
        budget = situation.settings.gpu_hour_budget(namespace)
        room = f"fits namespace {namespace}'s GPU-hour budget ({budget:g})" if budget is not None else "has no budget"
        draft.events.append(EventNote.normal(Reason.BUDGET_AVAILABLE, f"the job {room} now: attempt {attempt + 1}"))
