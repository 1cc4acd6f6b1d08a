"""status.estimate and the per-namespace GPU-hour budget, in the pure state machine (fake clock).

- The trainer's token count at DataDownload becomes status.estimate: tokens x epochs over the
  template's declared tokens/s per GPU x GPUs; without a declared figure, the job's measured one.
- A new job whose namespace has spent its budget waits Queued (BudgetExceeded) before attempt 1,
  with one Warning Event naming the namespace, the budget, the spent GPU-hours and what to do,
  and starts by itself once the budget is raised.
- A running job whose estimate does not fit is stopped at DataDownload and waits the same way.
"""

from __future__ import annotations

import math
from typing import Any

from kubetune_operator.api.conditions import Reason
from kubetune_operator.api.resources import BaseModelTemplate
from kubetune_operator.api.status import ConditionType, Phase
from kubetune_operator.lifecycle.actions import DeleteAttempt
from kubetune_operator.observe.observation import Observation, RunState
from kubetune_operator.settings import OperatorSettings
from kubetune_trainer.contract import Progress, Stage, StageRecord, StageState

from .core_builders import CATALOG, SETTINGS
from .machine_harness import PASSED, Machine, attempt_seen, creates, reasons, requeue

THROUGHPUT = 2000.0
TOKENS = 3_600_000
ALIAS = "togethercomputer/llama-2-7b-chat"


def _with_throughput() -> tuple[BaseModelTemplate, ...]:
    def declared(template: BaseModelTemplate) -> BaseModelTemplate:
        if ALIAS not in template.spec.aliases:
            return template
        wire: dict[str, Any] = template.to_wire()
        wire["spec"]["training"] = {**wire["spec"].get("training", {}), "expectedTokensPerSecondPerGpu": THROUGHPUT}
        return BaseModelTemplate.parse(wire)

    return tuple(declared(t) for t in CATALOG)


def _budget(hours: float) -> OperatorSettings:
    return OperatorSettings(
        **{**SETTINGS.model_dump(), "gpu_hour_budgets": {"ml": hours}, "budget_recheck_seconds": 60.0}
    )


def _download_done(machine: Machine, *, tokens: int = TOKENS) -> None:
    """Rank 0's report once DataDownload has tokenized the training file."""
    records = [
        StageRecord(name=Stage.DATA_DOWNLOAD, state=StageState.SUCCEEDED, training_tokens=tokens),
        StageRecord(name=Stage.INITIALIZATION, state=StageState.RUNNING),
    ]
    machine.status = machine.status.model_copy(update={"stage": Stage.INITIALIZATION, "stages": records})


def _expected_gpu_hours(machine: Machine, throughput_per_gpu: float) -> float:
    resolved = machine.status.resolved
    assert resolved is not None
    assert resolved.hyperparameters is not None
    assert resolved.nodes is not None
    gpus = resolved.nodes * (resolved.gpus_per_node or 1)
    return TOKENS * resolved.hyperparameters.n_epochs / (throughput_per_gpu * gpus) / 3600 * gpus


def test_the_token_count_at_data_download_becomes_the_estimate_with_the_declared_throughput() -> None:
    machine = Machine(templates=_with_throughput())
    machine.start_running()
    assert machine.status.estimate is None, "no estimate before the tokens are counted"
    _download_done(machine)
    step = machine.tick(attempt_seen(1, RunState.RUNNING), at=10)

    estimate = machine.status.estimate
    assert estimate is not None
    assert (estimate.tokens, estimate.throughput, estimate.tokens_per_second_per_gpu) == (
        TOKENS,
        "declared",
        THROUGHPUT,
    )
    assert math.isclose(estimate.gpu_hours, _expected_gpu_hours(machine, THROUGHPUT))
    assert "DataDownload" in estimate.basis
    assert Reason.ESTIMATED in reasons(step.events)
    again = machine.tick(attempt_seen(1, RunState.RUNNING), at=20)
    assert Reason.ESTIMATED not in reasons(again.events), "estimated once"


def test_without_a_declared_throughput_the_estimate_waits_for_the_measured_one() -> None:
    machine = Machine()
    machine.start_running()
    _download_done(machine)
    machine.tick(attempt_seen(1, RunState.RUNNING), at=10)
    assert machine.status.estimate is None, "no figure is made up"

    records = [*machine.status.stages[:1], StageRecord(name=Stage.TRAINING, state=StageState.RUNNING)]
    gpus = (machine.status.resolved.gpus_per_node or 1) if machine.status.resolved else 1
    progress = Progress(step=3, total_steps=100, tokens_per_second=1500.0 * gpus)
    machine.status = machine.status.model_copy(
        update={"stage": Stage.TRAINING, "stages": records, "progress": progress}
    )
    machine.tick(attempt_seen(1, RunState.RUNNING), at=20)

    estimate = machine.status.estimate
    assert estimate is not None
    assert (estimate.throughput, estimate.tokens_per_second_per_gpu) == ("measured", 1500.0)
    assert math.isclose(estimate.gpu_hours, _expected_gpu_hours(machine, 1500.0))


def test_a_spent_budget_keeps_a_new_job_queued_until_the_budget_is_raised() -> None:
    machine = Machine(settings=_budget(10.0))
    machine.spent_gpu_hours = 12.5
    machine.tick(at=0)
    step = machine.tick(Observation(preflight=PASSED), at=5)

    assert machine.status.phase == Phase.QUEUED
    assert machine.status.attempt == 0
    assert creates(step) == [], "no GPU pod while the budget is spent"
    scheduled = machine.condition(ConditionType.SCHEDULED)
    assert scheduled.reason == Reason.BUDGET_EXCEEDED
    (warning,) = [e for e in step.events if e.reason == Reason.BUDGET_EXCEEDED]
    assert warning.type == "Warning"
    for words in ("job support-bot waits", "namespace ml", "budget 10", "12.5 GPU-hours", "raise gpuHourBudgets"):
        assert words in warning.message
    assert requeue(step) == 60.0, "it looks again by itself"

    still = machine.tick(Observation(preflight=PASSED), at=65)
    assert creates(still) == []
    assert Reason.BUDGET_EXCEEDED not in reasons(still.events), "one Event, no repeat"

    machine.settings = _budget(50.0)  # the administrator raises it (the operator restarts with it)
    raised = machine.tick(Observation(preflight=PASSED), at=130)
    assert [c.attempt for c in creates(raised)] == [1]
    assert machine.status.attempt == 1
    assert Reason.BUDGET_AVAILABLE in reasons(raised.events)


def test_an_estimate_that_does_not_fit_stops_the_attempt_at_data_download_and_waits() -> None:
    machine = Machine(templates=_with_throughput(), settings=_budget(0.25))  # the estimate is 0.5
    machine.spent_gpu_hours = 0.0
    machine.start_running()
    assert machine.status.phase == Phase.RUNNING, "nothing spent yet: it starts"

    _download_done(machine)
    step = machine.tick(attempt_seen(1, RunState.RUNNING, live_pods=1, pod_seconds=120.0), at=10)

    assert machine.status.estimate is not None
    assert machine.status.estimate.gpu_hours > 0.25
    assert machine.status.phase == Phase.QUEUED
    assert machine.condition(ConditionType.SCHEDULED).reason == Reason.BUDGET_EXCEEDED
    assert DeleteAttempt(attempt=1) in step.actions, "the GPUs are released"
    assert machine.status.gpu_seconds, "the time it held them is counted"
    (warning,) = [e for e in step.events if e.reason == Reason.BUDGET_EXCEEDED]
    assert "this job's estimate" in warning.message

    machine.settings = _budget(1000.0)
    resumed = machine.tick(attempt_seen(1, RunState.ABSENT), at=100)
    assert [c.attempt for c in creates(resumed)] == [2]
