"""kubetune_job_stage_duration_seconds observes every stage the operator announces as finished, once."""

from __future__ import annotations

from datetime import timedelta

from kubetune_operator.api.status import Phase
from kubetune_operator.controller.bookkeeping import record_step
from kubetune_operator.metrics import OperatorMetrics
from kubetune_operator.observe.observation import Observation, RunState
from kubetune_trainer.contract import Stage, StageRecord, StageState

from .core_builders import T0
from .machine_harness import Machine, attempt_seen, succeeded_result

KEY = ("ml", "support-bot")
DONE, RUNNING = StageState.SUCCEEDED, StageState.RUNNING


def _record(stage: Stage, start: int, end: int | None) -> StageRecord:
    ended = T0 + timedelta(seconds=end) if end is not None else None
    return StageRecord(
        name=stage, state=DONE if end else RUNNING, start_time=T0 + timedelta(seconds=start), end_time=ended
    )


def _observed(metrics: OperatorMetrics, stage: Stage) -> tuple[float | None, float | None]:
    labels = {"stage": stage.value}
    registry = metrics.registry
    return (
        registry.get_sample_value("kubetune_job_stage_duration_seconds_count", labels),
        registry.get_sample_value("kubetune_job_stage_duration_seconds_sum", labels),
    )


def _tick(machine: Machine, metrics: OperatorMetrics, seen: Observation, *, at: float) -> None:
    old = machine.status
    step = machine.tick(seen, at=at)
    record_step(metrics, KEY, old=old, step=step)


def test_each_finished_stage_is_observed_once_through_a_whole_run() -> None:
    metrics = OperatorMetrics()
    machine = Machine()
    machine.start_running()
    reported = [
        _record(Stage.DATA_DOWNLOAD, 0, 2),
        _record(Stage.INITIALIZATION, 2, 5),
        _record(Stage.TRAINING, 5, None),
    ]
    machine.status = machine.status.model_copy(update={"stage": Stage.TRAINING, "stages": reported})
    _tick(machine, metrics, attempt_seen(1, RunState.RUNNING), at=10)
    _tick(machine, metrics, attempt_seen(1, RunState.RUNNING), at=20)  # a progress tick: nothing new
    ended = [*reported[:2], _record(Stage.TRAINING, 5, 105)]
    machine.status = machine.status.model_copy(update={"stages": ended})
    _tick(machine, metrics, attempt_seen(1, RunState.SUCCEEDED, result=succeeded_result()), at=110)
    assert machine.status.phase == Phase.SUCCEEDED

    assert _observed(metrics, Stage.DATA_DOWNLOAD) == (1.0, 2.0)
    assert _observed(metrics, Stage.INITIALIZATION) == (1.0, 3.0)
    assert _observed(metrics, Stage.TRAINING) == (1.0, 100.0)
